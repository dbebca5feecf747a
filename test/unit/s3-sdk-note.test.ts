// What the AWS SDK logs reaches --verbose as readable text, never "[object Object]".
import { describe, expect, it } from 'vitest';
import { describeSdkError, formatSdkNote } from '../../src/backend/s3.js';

describe('formatSdkNote', () => {
  it('prints an object the SDK logs with its fields, on one line', () => {
    const note = formatSdkNote({ clientName: 'S3Client', commandName: 'PutObjectCommand', input: { Bucket: 'b', Key: 'k' } });
    expect(note).not.toContain('[object Object]');
    expect(note).toContain("commandName: 'PutObjectCommand'");
    expect(note).toContain("Key: 'k'");
    expect(note).not.toContain('\n');
  });

  it('prints an SDK error as code, HTTP status and message, and a store\'s empty message as nothing', () => {
    const error = Object.assign(new Error('UnknownError'), { name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });
    expect(formatSdkNote(error)).toBe('PreconditionFailed (HTTP 412)');
    const denied = Object.assign(new Error('Access Denied'), { name: 'AccessDenied', Code: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
    expect(describeSdkError(denied)).toBe('AccessDenied (HTTP 403): Access Denied');
  });

  it('passes strings through', () => {
    expect(formatSdkNote('An error was encountered in a non-retryable streaming request.')).toBe('An error was encountered in a non-retryable streaming request.');
  });
});
