/**
 * Read a file that holds a secret (identity, password, private key) the way ssh reads a private
 * key: refuse it when group or others have any access to it, naming the file and its mode. The
 * mode is checked on the descriptor the text is then read from (fstat), so the file checked is the
 * file read: no window in which it can be swapped between a stat and a read.
 */
import { open } from 'node:fs/promises';
import { ConfigError, ErrorCodes, type ErrorCode } from './errors.js';

export interface SecretFileOptions {
  /** What the file holds, for the message ("the device secret", "the server private key"). */
  readonly what: string;
  /** How the file is named in messages (a flag such as "--password-file FILE"); default the path. */
  readonly label?: string;
  readonly permissionsCode?: ErrorCode;
  readonly readErrorCode?: ErrorCode;
}

export async function readSecretFile(file: string, o: SecretFileOptions): Promise<string> {
  const label = o.label ?? file;
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw new ConfigError([`${label}: cannot read ${o.what}: ${(err as Error).message}`], {
      cause: err,
      code: o.readErrorCode ?? ErrorCodes.CONFIG_INVALID,
    });
  }
  try {
    const st = await fh.stat();
    if ((st.mode & 0o077) !== 0) {
      throw new ConfigError(
        [
          `${label}: mode ${(st.mode & 0o777).toString(8).padStart(3, '0')} lets group or others read ${o.what}; expected 600 (chmod 600 ${file})`,
        ],
        { code: o.permissionsCode ?? ErrorCodes.SECRET_FILE_PERMISSIONS },
      );
    }
    return await fh.readFile('utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError([`${label}: cannot read ${o.what}: ${(err as Error).message}`], {
      cause: err,
      code: o.readErrorCode ?? ErrorCodes.CONFIG_INVALID,
    });
  } finally {
    await fh.close();
  }
}
