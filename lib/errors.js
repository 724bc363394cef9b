'use strict';
// Errors with Node's codes and messages, for the argument checks that
// node:cluster and child_process perform.

const { inspect } = require('node:util');

function makeError(Base, code, message) {
  const err = new Base(message);
  // Node's errors show the code in the stack header: "TypeError [CODE]: ...".
  Object.defineProperty(err, 'name', { value: `${Base.name} [${code}]`, configurable: true, writable: true, enumerable: false });
  void err.stack;
  delete err.name;
  err.code = code;
  return err;
}

const kTypes = ['string', 'function', 'number', 'object', 'Function', 'Object', 'boolean', 'bigint', 'symbol'];
const classRegExp = /^([A-Z][a-z0-9]*)+$/;

function formatList(list, word) {
  if (list.length <= 2) return list.join(` ${word} `);
  return `${list.slice(0, -1).join(', ')}, ${word} ${list[list.length - 1]}`;
}

function determineSpecificType(value) {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  switch (typeof value) {
    case 'bigint': return `type bigint (${value}n)`;
    case 'number':
      if (value === 0) return 1 / value === -Infinity ? 'type number (-0)' : 'type number (0)';
      if (value !== value) return 'type number (NaN)';
      if (value === Infinity) return 'type number (Infinity)';
      if (value === -Infinity) return 'type number (-Infinity)';
      return `type number (${value})`;
    case 'boolean': return value ? 'type boolean (true)' : 'type boolean (false)';
    case 'symbol': return `type symbol (${String(value)})`;
    case 'function': return `function ${value.name}`;
    case 'object':
      if (value.constructor && 'name' in value.constructor) return `an instance of ${value.constructor.name}`;
      return `${inspect(value, { depth: -1 })}`;
    case 'string': {
      let v = value;
      if (v.length > 28) v = `${v.slice(0, 25)}...`;
      if (v.indexOf("'") === -1) return `type string ('${v}')`;
      return `type string (${JSON.stringify(v)})`;
    }
    default: return `type ${typeof value} (${inspect(value, { colors: false })})`;
  }
}

function ERR_INVALID_ARG_TYPE(name, expected, actual) {
  if (!Array.isArray(expected)) expected = [expected];
  let msg = 'The ';
  if (name.endsWith(' argument')) {
    msg += `${name} `;
  } else {
    msg += `"${name}" ${name.includes('.') ? 'property' : 'argument'} `;
  }
  msg += 'must be ';
  const types = [];
  const instances = [];
  const other = [];
  for (const value of expected) {
    if (kTypes.includes(value)) types.push(value.toLowerCase());
    else if (classRegExp.test(value)) instances.push(value);
    else other.push(value);
  }
  if (instances.length > 0) {
    const pos = types.indexOf('object');
    if (pos !== -1) {
      types.splice(pos, 1);
      instances.push('Object');
    }
  }
  if (types.length > 0) {
    msg += `${types.length > 1 ? 'one of type' : 'of type'} ${formatList(types, 'or')}`;
    if (instances.length > 0 || other.length > 0) msg += ' or ';
  }
  if (instances.length > 0) {
    msg += `an instance of ${formatList(instances, 'or')}`;
    if (other.length > 0) msg += ' or ';
  }
  if (other.length > 0) {
    if (other.length > 1) msg += `one of ${formatList(other, 'or')}`;
    else {
      if (other[0].toLowerCase() !== other[0]) msg += 'an ';
      msg += `${other[0]}`;
    }
  }
  msg += `. Received ${determineSpecificType(actual)}`;
  return makeError(TypeError, 'ERR_INVALID_ARG_TYPE', msg);
}

function ERR_INVALID_ARG_VALUE(name, value, reason = 'is invalid') {
  let inspected = inspect(value);
  if (inspected.length > 128) inspected = `${inspected.slice(0, 128)}...`;
  const type = name.includes('.') ? 'property' : 'argument';
  return makeError(TypeError, 'ERR_INVALID_ARG_VALUE', `The ${type} '${name}' ${reason}. Received ${inspected}`);
}

function ERR_OUT_OF_RANGE(str, range, input) {
  const received = Number.isInteger(input) && Math.abs(input) > 2 ** 32 ?
    String(input).replace(/(\d)(?=(\d{3})+$)/g, '$1_') : inspect(input);
  return makeError(RangeError, 'ERR_OUT_OF_RANGE',
    `The value of "${str}" is out of range. It must be ${range}. Received ${received}`);
}

function ERR_SOCKET_BAD_PORT(name, port, allowZero = true) {
  const operator = allowZero ? '>=' : '>';
  return makeError(RangeError, 'ERR_SOCKET_BAD_PORT',
    `${name} should be ${operator} 0 and < 65536. Received ${determineSpecificType(port)}.`);
}

function ERR_MISSING_ARGS(...names) {
  const wrapped = names.map((a) => `"${a}"`);
  let msg = 'The ';
  switch (wrapped.length) {
    case 1: msg += `${wrapped[0]} argument`; break;
    case 2: msg += `${wrapped[0]} and ${wrapped[1]} arguments`; break;
    default: msg += `${wrapped.slice(0, -1).join(', ')}, and ${wrapped[wrapped.length - 1]} arguments`;
  }
  return makeError(TypeError, 'ERR_MISSING_ARGS', `${msg} must be specified`);
}

const simple = (Base, code, message) => () => makeError(Base, code, message);

// Node's validateInteger for our millisecond and count options: undefined
// passes, anything else must be an integer in [min, 2^31 - 1].
function validateInteger(value, name, min) {
  if (value === undefined) return;
  if (typeof value !== 'number') throw ERR_INVALID_ARG_TYPE(name, 'number', value);
  if (!Number.isInteger(value) || value < min || value > 2 ** 31 - 1) {
    throw ERR_OUT_OF_RANGE(name, `an integer >= ${min} and <= 2147483647`, value);
  }
}

module.exports = {
  makeError,
  validateInteger,
  ERR_INVALID_ARG_TYPE,
  ERR_INVALID_ARG_VALUE,
  ERR_OUT_OF_RANGE,
  ERR_SOCKET_BAD_PORT,
  ERR_MISSING_ARGS,
  ERR_IPC_CHANNEL_CLOSED: simple(Error, 'ERR_IPC_CHANNEL_CLOSED', 'Channel closed'),
  ERR_IPC_DISCONNECTED: simple(Error, 'ERR_IPC_DISCONNECTED', 'IPC channel is already disconnected'),
  ERR_INVALID_HANDLE_TYPE: simple(TypeError, 'ERR_INVALID_HANDLE_TYPE', 'This handle type cannot be sent'),
  ERR_UNKNOWN_SIGNAL: (signal) => makeError(TypeError, 'ERR_UNKNOWN_SIGNAL', `Unknown signal: ${signal}`),
};
