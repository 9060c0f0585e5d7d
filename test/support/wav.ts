/**
 * A canonical `wav` file: its 44-byte header (`RIFF`, `WAVE`, `fmt `, `data`) of integer samples
 * (`coding` 1) at `rate` Hz, `channels` and `bits` a sample, then `data`.
 */
export function wav(
  data: Buffer,
  {
    rate,
    channels = 1,
    bits = 16,
    coding = 1,
  }: { rate: number; channels?: number; bits?: number; coding?: number },
): Buffer {
  const head = Buffer.alloc(44);
  head.write("RIFF", 0, "latin1");
  head.writeUInt32LE(36 + data.length, 4);
  head.write("WAVEfmt ", 8, "latin1");
  head.writeUInt32LE(16, 16);
  head.writeUInt16LE(coding, 20);
  head.writeUInt16LE(channels, 22);
  head.writeUInt32LE(rate, 24);
  head.writeUInt32LE((rate * channels * bits) / 8, 28);
  head.writeUInt16LE((channels * bits) / 8, 32);
  head.writeUInt16LE(bits, 34);
  head.write("data", 36, "latin1");
  head.writeUInt32LE(data.length, 40);
  return Buffer.concat([head, data]);
}
