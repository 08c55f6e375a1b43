// Contracts with goim: PushMsg queue bytes, RPC message field numbers, method
// paths, and the promise-based gRPC server/client wrappers end to end.
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import {
  type CometHandlers,
  cometServiceDefinition,
  createCometClient,
  createLogicClient,
  decodePushMsg,
  encodePushMsg,
  grpcStatus,
  type LogicHandlers,
  type LogicMethods,
  logicServiceDefinition,
  type PushMsg,
  RpcError,
  serveUnary,
} from "../proto/mod.ts";

const text = (s: string) => new TextEncoder().encode(s);
const hex = (s: string) => new Uint8Array(s.trim().split(/\s+/).map((b) => parseInt(b, 16)));
const ascii = (s: string) => Array.from(text(s), (b) => b.toString(16).padStart(2, "0")).join(" ");

// ---- PushMsg queue codec: golden bytes as goim's Go code writes them ----

Deno.test("PushMsg: ROOM push encodes to goim's bytes", () => {
  const bytes = encodePushMsg({
    type: "ROOM",
    operation: 1000,
    room: "live://1000",
    msg: new Uint8Array([1, 2, 3]),
  });
  // type=1 (08 01), operation=1000 (10 e8 07), room (2a 0b ...), msg (3a 03 01 02 03);
  // speed, server and keys are defaults and so absent.
  assert.deepEqual(bytes, hex(`08 01  10 e8 07  2a 0b ${ascii("live://1000")}  3a 03 01 02 03`));
});

Deno.test("PushMsg: PUSH to keys omits the default type, repeats keys in order", () => {
  const bytes = encodePushMsg({
    type: "PUSH",
    operation: 1000,
    server: "comet-1",
    keys: ["a", "b"],
    msg: text("hi"),
  });
  assert.deepEqual(
    bytes,
    hex(`10 e8 07  22 07 ${ascii("comet-1")}  32 01 61  32 01 62  3a 02 68 69`),
  );
});

Deno.test("PushMsg: BROADCAST with speed, negative int32 and the empty message", () => {
  assert.deepEqual(
    encodePushMsg({ type: "BROADCAST", operation: 1001, speed: 10 }),
    hex("08 02  10 e9 07  18 0a"),
  );
  // Go writes a negative int32 as a 10-byte varint (sign-extended to 64 bits).
  assert.deepEqual(encodePushMsg({ operation: -1 }), hex("10 ff ff ff ff ff ff ff ff ff 01"));
  assert.deepEqual(encodePushMsg({}), new Uint8Array());
  assert.deepEqual(
    encodePushMsg({ type: "PUSH", operation: 0, speed: 0, server: "", room: "", keys: [] }),
    new Uint8Array(),
  );
});

Deno.test("PushMsg: decode goim's bytes and round trip every field", () => {
  assert.deepEqual(
    decodePushMsg(hex(`08 01  10 e8 07  2a 0b ${ascii("live://1000")}  3a 03 01 02 03`)),
    {
      type: "ROOM",
      operation: 1000,
      speed: 0,
      server: "",
      room: "live://1000",
      keys: [],
      msg: new Uint8Array([1, 2, 3]),
    } satisfies PushMsg,
  );
  // Field order on the wire does not matter to a decoder.
  assert.equal(decodePushMsg(hex("18 05  08 02")).type, "BROADCAST");

  const full: PushMsg = {
    type: "BROADCAST",
    operation: 2_000_000_000,
    speed: 7,
    server: "comet-9",
    room: "live://ü",
    keys: ["k1", "", "k3"],
    msg: text("payload"),
  };
  assert.deepEqual(decodePushMsg(encodePushMsg(full)), full);
  assert.deepEqual(decodePushMsg(new Uint8Array()), {
    type: "PUSH",
    operation: 0,
    speed: 0,
    server: "",
    room: "",
    keys: [],
    msg: new Uint8Array(),
  });
});

Deno.test("PushMsg: decoded msg is a view into the input, not a copy", () => {
  const bytes = encodePushMsg({ type: "ROOM", room: "r", msg: new Uint8Array([9, 9, 9, 9]) });
  const { msg } = decodePushMsg(bytes);
  assert.equal(msg.buffer, bytes.buffer);
  assert.deepEqual(msg, new Uint8Array([9, 9, 9, 9]));
});

Deno.test("PushMsg: unknown type and malformed bytes throw", () => {
  assert.throws(() => decodePushMsg(hex("08 07")), /unknown type 7/);
  assert.throws(() => decodePushMsg(hex("2a 0b 6c")), RangeError);
  assert.throws(
    () => encodePushMsg({ type: "ROOMS" as PushMsg["type"] }),
    /unknown type "ROOMS"/,
  );
});

// ---- gRPC definitions: goim's method paths and field numbers ----

Deno.test("gRPC: method paths are goim's", () => {
  assert.deepEqual(
    Object.values(cometServiceDefinition).map((m) => m.path),
    ["PushMsg", "Broadcast", "BroadcastRoom", "Rooms"].map((m) => `/goim.comet.Comet/${m}`),
  );
  assert.deepEqual(
    Object.values(logicServiceDefinition).map((m) => m.path),
    ["Connect", "Disconnect", "Heartbeat", "RenewOnline", "Receive", "Nodes"].map((m) =>
      `/goim.logic.Logic/${m}`
    ),
  );
});

Deno.test("gRPC: message field numbers are goim's", () => {
  const bytes = (b: Uint8Array) => new Uint8Array(b);
  // keys=1, proto=2 {ver=1, op=2, seq=3, body=4}, protoOp=3.
  assert.deepEqual(
    bytes(cometServiceDefinition.PushMsg.requestSerialize({
      keys: ["k"],
      proto: { ver: 1, op: 1000, body: text("x") },
      protoOp: 1000,
    })),
    hex("0a 01 6b  12 08 08 01 10 e8 07 22 01 78  18 e8 07"),
  );
  // mid=1, key=2, roomID=3, accepts=4 (packed), heartbeat=5.
  assert.deepEqual(
    bytes(logicServiceDefinition.Connect.responseSerialize({
      mid: 1,
      key: "k",
      roomID: "r",
      accepts: [1000],
      heartbeat: 1,
    })),
    hex("08 01  12 01 6b  1a 01 72  22 02 e8 07  28 01"),
  );
  // domain=1, tcp_port=2, backoff=7 {max_delay=1, factor=3 (float)}, heartbeat_max=8.
  assert.deepEqual(
    bytes(logicServiceDefinition.Nodes.responseSerialize({
      domain: "d",
      tcp_port: 3101,
      backoff: { max_delay: 1, factor: 1.5 },
      heartbeat_max: 2,
    })),
    hex("0a 01 64  10 9d 18  3a 07 08 01 1d 00 00 c0 3f  40 02"),
  );
});

Deno.test("gRPC: ConnectReply's auth scope takes 100–103 and leaves goim's bytes alone", () => {
  const bytes = (b: Uint8Array) => new Uint8Array(b);
  const goim = hex("08 01  12 01 6b  1a 01 72  22 02 e8 07  28 01");
  const base = { mid: 1, key: "k", roomID: "r", accepts: [1000], heartbeat: 1 };
  // Unrestricted: the fields are left out (logic's Connect does so), the bytes are goim's.
  // (protobufjs would write an explicit `false` as a8 06 00: hence "left out", not "false".)
  assert.deepEqual(
    bytes(logicServiceDefinition.Connect.responseSerialize({
      ...base,
      allowed_rooms: [],
      allowed_ops: [],
    })),
    goim,
  );
  // Restricted: allowed_rooms=100 (a2 06, len), rooms_restricted=101 (a8 06),
  // allowed_ops=102 packed (b2 06, len), ops_restricted=103 (b8 06), after goim's fields.
  const restricted = bytes(logicServiceDefinition.Connect.responseSerialize({
    ...base,
    allowed_rooms: ["a", "b*"],
    rooms_restricted: true,
    allowed_ops: [1000],
    ops_restricted: true,
  }));
  assert.deepEqual(
    restricted,
    hex(
      "08 01  12 01 6b  1a 01 72  22 02 e8 07  28 01" +
        "  a2 06 01 61  a2 06 02 62 2a  a8 06 01  b2 06 02 e8 07  b8 06 01",
    ),
  );
  // "Restricted to nothing" is still on the wire: the flag without a list.
  assert.deepEqual(
    bytes(logicServiceDefinition.Connect.responseSerialize({
      ...base,
      rooms_restricted: true,
      ops_restricted: true,
    })),
    hex("08 01  12 01 6b  1a 01 72  22 02 e8 07  28 01  a8 06 01  b8 06 01"),
  );
  // A goim logic's reply decodes as unrestricted; ours round-trips.
  const fromGoim = logicServiceDefinition.Connect.responseDeserialize(
    goim as unknown as Buffer,
  ) as Record<string, unknown>;
  assert.equal(fromGoim.rooms_restricted, false);
  assert.equal(fromGoim.ops_restricted, false);
  assert.deepEqual(fromGoim.allowed_rooms, []);
  assert.deepEqual(fromGoim.allowed_ops, []);
  const ours = logicServiceDefinition.Connect.responseDeserialize(
    restricted as unknown as Buffer,
  ) as Record<string, unknown>;
  assert.deepEqual(ours.allowed_rooms, ["a", "b*"]);
  assert.equal(ours.rooms_restricted, true);
  assert.deepEqual(ours.allowed_ops, [1000]);
  assert.equal(ours.ops_restricted, true);
});

// ---- gRPC end to end over 127.0.0.1 ----

type Servers = {
  address: string;
  seen: Map<string, unknown>;
  close(): void;
};

async function startServer(
  logic: Partial<LogicHandlers>,
  comet: Partial<CometHandlers>,
): Promise<Servers> {
  const seen = new Map<string, unknown>();
  // Record what each handler received, so the tests can check decoding.
  const record = <H extends object>(handlers: H): H =>
    Object.fromEntries(
      Object.entries(handlers).map(([name, fn]) => [name, (req: unknown) => {
        seen.set(name, req);
        return fn(req);
      }]),
    ) as H;
  const server = new grpc.Server();
  server.addService(logicServiceDefinition, serveUnary(record(logic) as LogicHandlers));
  server.addService(cometServiceDefinition, serveUnary(record(comet) as CometHandlers));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (err, port) => err ? reject(err) : resolve(port),
    )
  );
  return { address: `127.0.0.1:${port}`, seen, close: () => server.forceShutdown() };
}

Deno.test("gRPC: every Logic method through the typed client", async () => {
  const srv = await startServer({
    Connect: () => ({
      mid: 2 ** 40 + 1,
      key: "key-1",
      roomID: "live://1000",
      accepts: [1000, 1001],
      heartbeat: 480e9,
    }),
    Disconnect: () => ({ has: true }),
    Heartbeat: () => Promise.resolve({}),
    RenewOnline: (req) => ({ allRoomCount: { ...req.roomCount, "live://2": 5 } }),
    Receive: () => ({}),
    Nodes: (req) => ({
      domain: req.platform + ".example",
      tcp_port: 3101,
      ws_port: 3102,
      wss_port: 3103,
      heartbeat: 240,
      nodes: ["127.0.0.1"],
      backoff: { max_delay: 300, base_delay: 3, factor: 1.5, jitter: 0.25 },
      heartbeat_max: 2,
    }),
  }, {});
  const logic = createLogicClient(srv.address);
  try {
    const token = text('{"mid":1,"room_id":"live://1000"}');
    assert.deepEqual(await logic.Connect({ server: "comet-1", token }), {
      mid: 2 ** 40 + 1,
      key: "key-1",
      roomID: "live://1000",
      accepts: [1000, 1001],
      heartbeat: 480e9,
      // The auth scope fields (100–103) arrive with their defaults: unrestricted;
      // and the token expiry (104): never.
      allowed_rooms: [],
      rooms_restricted: false,
      allowed_ops: [],
      ops_restricted: false,
      token_expires_in_ms: 0,
      streams: false,
      recover: [],
    });
    // Requests reach handlers complete: omitted fields carry their defaults.
    const connectReq = srv.seen.get("Connect") as Record<string, unknown>;
    assert.equal(connectReq.server, "comet-1");
    assert.equal(connectReq.cookie, "");
    assert.deepEqual(new Uint8Array(connectReq.token as Uint8Array), token);

    assert.deepEqual(await logic.Disconnect({ mid: 7, key: "k", server: "s" }), { has: true });
    assert.deepEqual(srv.seen.get("Disconnect"), { mid: 7, key: "k", server: "s" });

    assert.deepEqual(await logic.Heartbeat({ mid: 7, key: "k" }), {});
    assert.deepEqual(srv.seen.get("Heartbeat"), { mid: 7, key: "k", server: "" });

    assert.deepEqual(
      await logic.RenewOnline({ server: "comet-1", roomCount: { "live://1": 3 } }),
      { allRoomCount: { "live://1": 3, "live://2": 5 } },
    );

    assert.deepEqual(await logic.Receive({ mid: 7, proto: { ver: 1, op: 4, seq: 9 } }), {});
    const receiveReq = srv.seen.get("Receive") as { mid: number; proto: Record<string, unknown> };
    assert.equal(receiveReq.mid, 7);
    assert.equal(receiveReq.proto.op, 4);
    assert.equal(receiveReq.proto.seq, 9);
    assert.equal((receiveReq.proto.body as Uint8Array).length, 0);

    assert.deepEqual(await logic.Nodes({ platform: "web" }), {
      domain: "web.example",
      tcp_port: 3101,
      ws_port: 3102,
      wss_port: 3103,
      heartbeat: 240,
      nodes: ["127.0.0.1"],
      backoff: { max_delay: 300, base_delay: 3, factor: 1.5, jitter: 0.25 },
      heartbeat_max: 2,
    });
  } finally {
    logic.close();
    srv.close();
  }
});

Deno.test("gRPC: every Comet method through the typed client", async () => {
  const srv = await startServer({}, {
    PushMsg: () => ({}),
    Broadcast: () => ({}),
    BroadcastRoom: () => ({}),
    Rooms: () => ({ rooms: { "live://1000": true, "live://1001": true } }),
  });
  const comet = createCometClient(srv.address);
  try {
    const proto = { ver: 1, op: 1000, seq: 0, body: text("hello") };
    assert.deepEqual(await comet.PushMsg({ keys: ["a", "b"], protoOp: 1000, proto }), {});
    const pushReq = srv.seen.get("PushMsg") as {
      keys: string[];
      protoOp: number;
      proto: { body: Uint8Array };
    };
    assert.deepEqual(pushReq.keys, ["a", "b"]);
    assert.equal(pushReq.protoOp, 1000);
    assert.deepEqual(new Uint8Array(pushReq.proto.body), text("hello"));

    assert.deepEqual(await comet.Broadcast({ protoOp: 1001, proto, speed: 5 }), {});
    assert.equal((srv.seen.get("Broadcast") as { speed: number }).speed, 5);

    assert.deepEqual(await comet.BroadcastRoom({ roomID: "live://1000", proto }), {});
    assert.equal((srv.seen.get("BroadcastRoom") as { roomID: string }).roomID, "live://1000");

    assert.deepEqual(await comet.Rooms({}), {
      rooms: { "live://1000": true, "live://1001": true },
    });
  } finally {
    comet.close();
    srv.close();
  }
});

Deno.test("gRPC: replies that leave fields out arrive with defaults", async () => {
  const srv = await startServer({
    Connect: () => ({ mid: 1 }),
    Disconnect: () => ({}),
    Nodes: () => ({ domain: "d" }),
  }, { Rooms: () => ({}) });
  const logic = createLogicClient(srv.address);
  const comet = createCometClient(srv.address);
  try {
    assert.deepEqual(await logic.Connect({}), {
      mid: 1,
      key: "",
      roomID: "",
      accepts: [],
      heartbeat: 0,
      allowed_rooms: [],
      rooms_restricted: false,
      allowed_ops: [],
      ops_restricted: false,
      token_expires_in_ms: 0,
      streams: false,
      recover: [],
    });
    assert.deepEqual(await logic.Disconnect({}), { has: false });
    const nodes = await logic.Nodes({});
    assert.equal(nodes.backoff, null);
    assert.deepEqual(nodes.nodes, []);
    assert.deepEqual(await comet.Rooms({}), { rooms: {} });
  } finally {
    logic.close();
    comet.close();
    srv.close();
  }
});

Deno.test("gRPC: handler errors reject the caller with a clear RpcError", async () => {
  const srv = await startServer({
    Connect: () => {
      throw new Error("boom");
    },
    Disconnect: () => Promise.reject(new RpcError(grpcStatus.UNAUTHENTICATED, "bad token")),
    Heartbeat: () => new Promise(() => {}), // never answers
  }, {});
  const logic = createLogicClient(srv.address);
  try {
    await assert.rejects(logic.Connect({ server: "s" }), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, grpcStatus.UNKNOWN);
      assert.equal(err.details, "boom");
      assert.equal(err.message, "goim.logic.Logic/Connect: UNKNOWN: boom");
      return true;
    });
    await assert.rejects(logic.Disconnect({}), {
      name: "RpcError",
      code: grpcStatus.UNAUTHENTICATED,
      message: "goim.logic.Logic/Disconnect: UNAUTHENTICATED: bad token",
    });
    await assert.rejects(logic.Heartbeat({}, { deadlineMs: 100 }), {
      code: grpcStatus.DEADLINE_EXCEEDED,
    });
    // A method the server does not implement.
    await assert.rejects(logic.Nodes({}), { code: grpcStatus.UNIMPLEMENTED });
  } finally {
    logic.close();
    srv.close();
  }
});

Deno.test("gRPC: serveUnary reports handler errors to onError", async () => {
  const failures: [string, unknown][] = [];
  const server = new grpc.Server();
  const boom = new Error("boom");
  server.addService(
    logicServiceDefinition,
    serveUnary<Pick<LogicMethods, "Heartbeat">>({
      Heartbeat: () => Promise.reject(boom),
    }, { onError: (method, error) => failures.push([method, error]) }),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (err, port) => err ? reject(err) : resolve(port),
    )
  );
  const logic = createLogicClient(`127.0.0.1:${port}`);
  try {
    await assert.rejects(logic.Heartbeat({}), { details: "boom" });
    assert.deepEqual(failures, [["Heartbeat", boom]]);
  } finally {
    logic.close();
    server.forceShutdown();
  }
});

Deno.test("gRPC: a call to an unreachable server fails fast with UNAVAILABLE", async () => {
  // Bind then release a port, so nothing listens on it.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  const logic = createLogicClient(`127.0.0.1:${port}`);
  try {
    await assert.rejects(logic.Heartbeat({}, { deadlineMs: 3000 }), {
      code: grpcStatus.UNAVAILABLE,
    });
  } finally {
    logic.close();
  }
});
