// Preloaded with `node --require` for the runs without transport
// compression: discord.js 14 uses zlib-stream whenever the zlib-sync package
// loads, so this makes it not load. Nothing of discord.js is changed.
'use strict';

const Module = require('node:module');

const resolve = Module._resolveFilename;
Module._resolveFilename = function resolveWithoutZlibSync(request, ...rest) {
  if (request === 'zlib-sync') {
    const error = new Error("Cannot find module 'zlib-sync'");
    error.code = 'MODULE_NOT_FOUND';
    throw error;
  }
  return resolve.call(this, request, ...rest);
};
