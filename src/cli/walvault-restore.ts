#!/usr/bin/env node
// restore_command entry point: walvault-restore [options] <name> <path>
import { runCommand } from './main.js';
import { restoreMain } from './run-restore.js';

runCommand('walvault-restore', restoreMain);
