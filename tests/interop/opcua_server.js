// A third-party OPC-UA server (node-opcua) for twinflow's interop tests, in its own process.
//
//   node opcua_server.js <port> <namespace-uri> [<name>]
//
// It registers a dummy namespace first, so the test namespace is NOT at index 2: a mapping must use
// the portable `nsu=<uri>;s=...` form or a browse path. Address space (all in <namespace-uri>):
//   Objects/Line1/<name>/Flow         Double, changes every 100 ms (nodeId s=<name>.Flow)
//   Objects/Line1/<name>/Running      Boolean, toggles every second
//   Objects/Line1/<name>/Speed        Int32, counts up
//   Objects/Line1/<name>/Mode         String "AUTO"
//   Objects/Line1/<name>/Temperature  no value, status BadSensorFailure
//   Objects/Line1/<name>/Setpoint     Double, writable
//   Objects/Line1/<name>/Enable       Boolean, writable
//   Objects/Line1/<name>/Stage        Int16, writable (a setpoint that takes whole numbers -32768..32767)
// Prints "READY <port>" once it listens; exits on SIGTERM.
"use strict";
const { OPCUAServer } = require("node-opcua-server");
const { nodesets } = require("node-opcua-nodesets");
const { Variant, DataType } = require("node-opcua-variant");
const { DataValue } = require("node-opcua-data-value");
const { StatusCodes } = require("node-opcua-status-code");

const port = Number(process.argv[2]);
const uri = process.argv[3];
const name = process.argv[4] || "Pump1";

async function main() {
  const server = new OPCUAServer({
    port,
    resourcePath: "/UA/interop",
    nodeset_filename: [nodesets.standard],
    buildInfo: { productName: "twinflow interop (node-opcua)" },
    serverCertificateManager: undefined,
  });
  await server.initialize();
  const space = server.engine.addressSpace;
  space.registerNamespace("urn:twinflow:interop:decoy"); // pushes the test namespace to another index
  const ns = space.registerNamespace(uri);
  const line = ns.addFolder(space.rootFolder.objects, { browseName: "Line1" });
  const machine = ns.addObject({ organizedBy: line, browseName: name });
  const t0 = Date.now();
  const values = {
    Flow: () => new Variant({ dataType: DataType.Double, value: 12.5 + ((Date.now() - t0) % 1000) / 1000 }),
    Running: () => new Variant({ dataType: DataType.Boolean, value: Math.floor((Date.now() - t0) / 1000) % 2 === 0 }),
    Speed: () => new Variant({ dataType: DataType.Int32, value: 1400 + Math.floor((Date.now() - t0) / 100) % 100 }),
    Mode: () => new Variant({ dataType: DataType.String, value: "AUTO" }),
  };
  const dataTypes = { Flow: "Double", Running: "Boolean", Speed: "Int32", Mode: "String" };
  for (const [key, get] of Object.entries(values)) {
    ns.addVariable({
      componentOf: machine,
      browseName: key,
      nodeId: `s=${name}.${key}`,
      dataType: dataTypes[key],
      minimumSamplingInterval: 100,
      value: { get },
    });
  }
  const temp = ns.addVariable({
    componentOf: machine,
    browseName: "Temperature",
    nodeId: `s=${name}.Temperature`,
    dataType: "Double",
  });
  temp.setValueFromSource(new Variant({ dataType: DataType.Null }), StatusCodes.BadSensorFailure);
  const writable = [
    ["Setpoint", DataType.Double, 100.0],
    ["Enable", DataType.Boolean, false],
    ["Stage", DataType.Int16, 1],
  ];
  for (const [key, type, initial] of writable) {
    const v = ns.addVariable({
      componentOf: machine,
      browseName: key,
      nodeId: `s=${name}.${key}`,
      dataType: DataType[type],
      accessLevel: "CurrentRead | CurrentWrite",
      userAccessLevel: "CurrentRead | CurrentWrite",
    });
    v.setValueFromSource(new Variant({ dataType: type, value: initial }));
    v.on("value_changed", (dv) => console.log(`WRITE ${key}=${JSON.stringify(dv.value.value)}`));
  }
  await server.start();
  console.log(`READY ${port} ns=${space.getNamespaceIndex(uri)}`);
  const stop = async () => {
    await server.shutdown(0);
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
