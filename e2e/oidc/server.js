// A real OpenID Connect server for the JWT authorizer tests: oauth2-mock-server (npm), with its
// discovery document, JWKS and token endpoint, on 127.0.0.1:<port>. Prints "ready" when it
// listens. Lines on stdin control it: "rotate" publishes a new RS256 key (the old ones stay, so
// tokens are signed by each in turn) and prints "rotated <kid>".
const { OAuth2Server } = require('oauth2-mock-server');
const readline = require('readline');

const port = Number(process.argv[2]);
const server = new OAuth2Server();

(async () => {
  await server.issuer.keys.generate('RS256');
  await server.start(port, '127.0.0.1');
  console.log('ready');
  readline.createInterface({ input: process.stdin }).on('line', async (line) => {
    if (line.trim() === 'rotate') {
      const key = await server.issuer.keys.generate('RS256');
      console.log(`rotated ${key.kid}`);
    }
  });
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
