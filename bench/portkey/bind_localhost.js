// Preload for the Portkey gateway (bench/peers.sh): it listens on every interface and has no host
// flag, so force every TCP listen in the process onto loopback.
//
//   node --require bench/portkey/bind_localhost.js .../@portkey-ai/gateway/build/start-server.js --port=8787 --headless
//
// BIND_HOST overrides the address (default 127.0.0.1). Handles listen(port[, host][, backlog][, cb]),
// listen([cb]) and listen({port, host, ...}[, cb]); unix sockets and handles are left alone.
'use strict';
const net = require('node:net');

const HOST = process.env.BIND_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  if (args.length === 0 || typeof args[0] === 'function') args.unshift(0);  // listen([cb]): any port
  const a = args[0];
  if (a !== null && typeof a === 'object' && !Array.isArray(a) && !('fd' in a) && !('_handle' in a) && !a.path) {
    args[0] = { ...a, host: HOST };
  } else if (typeof a === 'number' || (typeof a === 'string' && /^\d+$/.test(a)) || a === undefined) {
    // port, then an optional host (string, null or undefined) before backlog / callback
    if (args.length > 1 && (typeof args[1] === 'string' || args[1] === null || args[1] === undefined)) args[1] = HOST;
    else args.splice(1, 0, HOST);
  }
  return listen.apply(this, args);
};
