// A TCP port free on 127.0.0.1 right now, for a benchmark server to take.
import net from 'node:net';

export async function freePort() {
  const s = net.createServer();
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}
