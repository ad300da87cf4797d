// A third-party Modbus TCP server (jsmodbus) for twinflow's interop tests, in its own process.
//
//   node modbus_server.js <port>
//
// It answers every unit id from one register image (jsmodbus does not check the unit id) and,
// like jsmodbus does, answers a read past the end of its image with fewer registers than asked.
// Holding registers (20):
//   0-1   float32 21.5, high word first             2     int16 -40
//   3-4   uint32 70000, low word first               5     uint16 0b1010_0110 (bit field)
//   6-9   int64 -5_000_000_000, high word first      10-13 float64 0.1
//   14-16 string "PUMP-7" (two characters per register, high byte first)
//   17-18 float32 21.5 with both bytes of each register swapped (byte order little)
//   19    uint16 setpoint 100 (writable with function 6 or 16)
// Input registers (4): 0 uint16 1234, 1 uint16 5678, 2-3 float32 123.456 (read with the wrong word order: -1.9e25)
// Coils (16): 0 on, 1 off, 2 on; discrete inputs (16): 0 off, 1 on
// Prints "READY <port>" once it listens, "WRITE <what> <address> <value>" after a client's write.
"use strict";
const net = require("net");
const modbus = require("jsmodbus");

const port = Number(process.argv[2]);
const holding = Buffer.alloc(40);
holding.writeFloatBE(21.5, 0);
holding.writeInt16BE(-40, 4);
holding.writeUInt16BE(70000 & 0xffff, 6); // low word first
holding.writeUInt16BE(70000 >>> 16, 8);
holding.writeUInt16BE(0b10100110, 10);
holding.writeBigInt64BE(-5000000000n, 12);
holding.writeDoubleBE(0.1, 20);
holding.write("PUMP-7", 28, "latin1");
const swapped = Buffer.alloc(4);
swapped.writeFloatBE(21.5, 0);
holding.writeUInt8(swapped[1], 34);
holding.writeUInt8(swapped[0], 35);
holding.writeUInt8(swapped[3], 36);
holding.writeUInt8(swapped[2], 37);
holding.writeUInt16BE(100, 38);

const input = Buffer.alloc(8);
input.writeUInt16BE(1234, 0);
input.writeUInt16BE(5678, 2);
input.writeFloatBE(123.456, 4);

const coils = Buffer.from([0b00000101, 0]);
const discrete = Buffer.from([0b00000010, 0]);

const netServer = new net.Server();
const server = new modbus.server.TCP(netServer, { holding, input, coils, discrete });
server.on("postWriteSingleRegister", (req) =>
  console.log(`WRITE holding ${req.body.address} ${holding.readUInt16BE(req.body.address * 2)} fc6`),
);
server.on("postWriteMultipleRegisters", (req) =>
  console.log(`WRITE holding ${req.body.address} ${holding.readUInt16BE(req.body.address * 2)} fc16`),
);
server.on("postWriteSingleCoil", (req) => console.log(`WRITE coil ${req.body.address} ${req.body.value ? 1 : 0} fc5`));
netServer.listen(port, "127.0.0.1", () => console.log(`READY ${port}`));
const stop = () => {
  netServer.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
