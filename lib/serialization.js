'use strict';
// User messages on the IPC channel, framed exactly as Node frames them:
// `json` is one JSON text per line, `advanced` is a 4-byte big-endian length
// followed by V8 serializer output (array buffer views as host objects).

const kArrayBufferViewTag = 0;
const kNotArrayBufferViewTag = 1;

// node:v8 is loaded only by a cluster that uses `advanced`.
function advancedCodec() {
  const v8 = require('node:v8');
  const { isArrayBufferView } = require('node:util').types;

  class ChannelSerializer extends v8.DefaultSerializer {
    _writeHostObject(object) {
      if (isArrayBufferView(object)) {
        this.writeUint32(kArrayBufferViewTag);
        return super._writeHostObject(object);
      }
      this.writeUint32(kNotArrayBufferViewTag);
      this.writeValue({ ...object });
    }
  }

  class ChannelDeserializer extends v8.DefaultDeserializer {
    _readHostObject() {
      const tag = this.readUint32();
      if (tag === kArrayBufferViewTag) return super._readHostObject();
      if (tag !== kNotArrayBufferViewTag) throw new Error(`Unknown host object tag ${tag}`);
      return this.readValue();
    }
  }

  return {
    encode(message) {
      const ser = new ChannelSerializer();
      ser.writeRawBytes(Buffer.allocUnsafe(4));
      ser.writeHeader();
      ser.writeValue(message);
      const out = ser.releaseBuffer();
      out.writeUInt32BE(out.length - 4, 0);
      return out;
    },
    decode(payload) {
      const des = new ChannelDeserializer(payload);
      des.readHeader();
      return des.readValue();
    },
  };
}

// JSON frames are strings: the core takes them as text (native.sendText).
const json = {
  encode(message) {
    return JSON.stringify(message) + '\n';
  },
  decode(payload) {
    return JSON.parse(payload.toString('utf8'));
  },
};

let advanced = null;

module.exports = {
  json,
  get advanced() {
    if (advanced === null) advanced = advancedCodec();
    return advanced;
  },
};
