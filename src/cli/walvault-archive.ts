#!/usr/bin/env node
// archive_command entry point: walvault-archive [options] <path> <name>
import { runCommand } from './main.js';
import { archiveMain } from './run-archive.js';

runCommand('walvault-archive', archiveMain);
