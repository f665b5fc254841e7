/**
 * P11: a user-chosen device password cannot be one that offline guessing breaks. The sealed
 * request, the PSK binder and the reverse token let the server operator, a Redis reader or an
 * on-path observer test guesses at scrypt N=2^10 (~4 ms each); a 4-digit PIN fell in 12 s. So
 * provisioning refuses any chosen password under 64 estimated bits or 12 characters with PEERLINK_ERR_PASSWORD_WEAK,
 * while every generated label password (98 bits) passes.
 */
import test from 'ava';
import { ErrorCodes } from '../../agent/common/errors.js';
import { createCa } from '../../agent/pki/ca.js';
import { createDeviceIdentity } from '../../agent/pki/device.js';
import { createRegistrationMasterKey } from '../../agent/pki/master-key.js';
import { generatePassword } from '../../agent/pki/password.js';
import { normalizePassword } from '../../agent/protocol/keys.js';
import {
  MIN_PASSWORD_CHARS,
  MIN_PASSWORD_ENTROPY_BITS,
  checkPasswordStrength,
  estimatePasswordBits,
} from '../../agent/pki/password-strength.js';

const ca = createCa();
const masterKey = createRegistrationMasterKey();

const WEAK = [
  '1234', // the PIN that fell in 12 s
  '0000-0000-0000',
  'password',
  'Tr0ub4dor&3', // 11 characters of mixed classes: ~70 bits by classes, but short
  'A'.repeat(40),
  '12345678901234567890123456789',
  'abcdefghijklmnopqrstuvwxyz',
  'qwertyuiop', // 10 letters: 47 bits
];

test('weak chosen passwords are refused with PEERLINK_ERR_PASSWORD_WEAK, and no identity is made', async (t) => {
  for (const password of WEAK) {
    t.true(estimatePasswordBits(password) < MIN_PASSWORD_ENTROPY_BITS || normalizePassword(password).length < MIN_PASSWORD_CHARS, password);
    await t.throwsAsync(
      createDeviceIdentity({ equipmentId: 'TV-1', masterKey, caCertPem: ca.certPem, password }),
      { code: ErrorCodes.PASSWORD_WEAK },
      password,
    );
  }
});

test('every generated label password passes, as do long random chosen ones', async (t) => {
  for (let i = 0; i < 2000; i++) {
    const p = generatePassword();
    t.notThrows(() => checkPasswordStrength(p, 'label'), p);
  }
  for (const p of ['Q7KM-2ZX9-TW4H-RC8N', 'correct horse battery staple', 'x9#Lq2!vR7@mW4$kT8'])
    t.notThrows(() => checkPasswordStrength(p, 'chosen'), p);
  const made = await createDeviceIdentity({ equipmentId: 'TV-2', masterKey, caCertPem: ca.certPem, password: 'Q7KM-2ZX9-TW4H-RC8N' });
  t.is(made.password, 'Q7KM-2ZX9-TW4H-RC8N');
});

test('the refusal names where the password came from; an oversized one is refused before scrypt', (t) => {
  const err = t.throws(() => checkPasswordStrength('1234', '/factory/pw.txt'), { code: ErrorCodes.PASSWORD_WEAK });
  t.true(err!.message.startsWith('/factory/pw.txt: '));
  t.throws(() => checkPasswordStrength(generatePassword().repeat(20), 'big'), { code: ErrorCodes.PASSWORD_WEAK });
});
