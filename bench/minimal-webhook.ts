// The floor for the fixed-rate authorization figures: a node:http server that reads each signed
// event, parses it and answers approved — no signature check, no policy, no database. What the
// load client and this machine cost a request before the gateway does anything.
import http from 'node:http';

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    let body: string;
    try {
      const event = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id?: unknown };
      body = JSON.stringify({ approved: true, metadata: { event: String(event.id ?? '') } });
    } catch {
      res.writeHead(400).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1');
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.close(() => process.exit(0)));
