// The floor for the mirror benchmark: the least a Node reverse proxy can do — node:http server,
// one keep-alive http.Agent, stream the request in and the answer out. No checks, no logging.
import http from 'node:http';

const [portArg, targetArg] = process.argv.slice(2);
const target = new URL(targetArg ?? 'http://127.0.0.1:12111');
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

const server = http.createServer((req, res) => {
  const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host }, agent }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on('error', () => {
    res.writeHead(502);
    res.end();
  });
  req.pipe(upstream);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(portArg ?? 0), '127.0.0.1');
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.close(() => process.exit(0)));
