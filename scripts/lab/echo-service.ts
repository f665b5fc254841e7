/** The appliance's stand-in service in the lab: a TCP echo on 127.0.0.1:PORT (argv[2]). */
import { createServer } from 'node:net';

const port = Number(process.argv[2] ?? 7000);
createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => undefined);
  s.pipe(s);
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
