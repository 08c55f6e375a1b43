/**
 * CityHash32 golden vectors.
 *
 * How the vectors were made: a throwaway Go program (outside this repo, Go
 * 1.26) importing github.com/zhenjl/cityhash@v0.0.0-20131128155616-cdd6a94144ab,
 * the package and version goim's go.mod pins, printed
 * `cityhash.CityHash32(b, uint32(len(b)))` for the byte patterns below and,
 * for the rooms, that hash and `% 64`, exactly as goim's
 * internal/logic/dao/redis.go `AddServerOnline` computes an `ol_<server>`
 * field (`[]byte(room)` is the room's UTF-8). The outputs are pasted as is.
 */

import assert from "node:assert/strict";
import { cityHash32 } from "../infra/cityhash.ts";

/** The Go program's input bytes: `b[i] = byte((i*31 + 7) & 0xff)`, lengths 0..130 and a few long ones. */
function pattern(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}

// [length, CityHash32(pattern(length))] from the Go program.
const PATTERN_VECTORS: [number, number][] = [
  [0, 3696677242],
  [1, 3398390666],
  [2, 3982881688],
  [3, 50139212],
  [4, 4254042634],
  [5, 3412707566],
  [6, 2849751976],
  [7, 3524289754],
  [8, 1700430435],
  [9, 2819560311],
  [10, 1302243732],
  [11, 737039007],
  [12, 3890927527],
  [13, 590819182],
  [14, 3118638588],
  [15, 2291971946],
  [16, 3440956083],
  [17, 2582421362],
  [18, 2435216598],
  [19, 273656664],
  [20, 110799463],
  [21, 1609772438],
  [22, 430926153],
  [23, 3806206583],
  [24, 60389910],
  [25, 2956826146],
  [26, 3257893953],
  [27, 277113313],
  [28, 3442075112],
  [29, 2978836437],
  [30, 1970005250],
  [31, 617259662],
  [32, 970703195],
  [33, 4182316952],
  [34, 1211747053],
  [35, 3951141387],
  [36, 3890187069],
  [37, 726080904],
  [38, 3058227405],
  [39, 1959160422],
  [40, 3113108108],
  [41, 1831250865],
  [42, 2589761761],
  [43, 1380071916],
  [44, 2256531986],
  [45, 2739105530],
  [46, 4005384119],
  [47, 3542049278],
  [48, 4193627528],
  [49, 1139176421],
  [50, 3581203331],
  [51, 1770846543],
  [52, 1714845394],
  [53, 3468169373],
  [54, 192094397],
  [55, 3813832617],
  [56, 2969059877],
  [57, 38385227],
  [58, 236793071],
  [59, 759880529],
  [60, 2581010572],
  [61, 322161444],
  [62, 2617594335],
  [63, 1173655587],
  [64, 1149845186],
  [65, 2902787594],
  [66, 1091349665],
  [67, 3447044199],
  [68, 140601095],
  [69, 3190513305],
  [70, 576666004],
  [71, 3365579404],
  [72, 3703046153],
  [73, 3427917182],
  [74, 2096355762],
  [75, 1620740675],
  [76, 2923763287],
  [77, 3243753702],
  [78, 4258606306],
  [79, 928618755],
  [80, 2542850618],
  [81, 881837390],
  [82, 2498377492],
  [83, 2756453793],
  [84, 3849920765],
  [85, 4064936989],
  [86, 2624777742],
  [87, 3530363883],
  [88, 1760328268],
  [89, 3778505798],
  [90, 2273908747],
  [91, 2102558296],
  [92, 257080381],
  [93, 2814122733],
  [94, 4150621254],
  [95, 1677595847],
  [96, 1661337268],
  [97, 1124812985],
  [98, 598086614],
  [99, 1165153759],
  [100, 3782319011],
  [101, 3214176832],
  [102, 959686781],
  [103, 1774777592],
  [104, 3733150715],
  [105, 1984412842],
  [106, 4213012315],
  [107, 2963536418],
  [108, 3943616223],
  [109, 1609210897],
  [110, 2224273207],
  [111, 2674707394],
  [112, 1769281728],
  [113, 4062910716],
  [114, 1998309878],
  [115, 567137971],
  [116, 3075947150],
  [117, 1556189423],
  [118, 3712545700],
  [119, 1966374012],
  [120, 3431166320],
  [121, 2689011811],
  [122, 4109588333],
  [123, 2817177602],
  [124, 4027603698],
  [125, 4065258441],
  [126, 3906714121],
  [127, 3068636521],
  [128, 2647756516],
  [129, 2073407854],
  [130, 3233844486],
  [255, 291677902],
  [256, 4260024508],
  [1000, 940339758],
  [4096, 1664787874],
];

// [room, CityHash32(utf8(room)), CityHash32 % 64] from the Go program (Go %q quoting).
const ROOM_VECTORS: [string, number, number][] = [
  ["", 3696677242, 58],
  ["a", 1016544589, 13],
  ["live://1", 1096265235, 19],
  ["live://1000", 1126145323, 43],
  ["live://1001", 1386120391, 7],
  ["chat://abc", 817235141, 5],
  ["live://直播间", 4176555809, 33],
  ["live://🎉", 820045660, 28],
  ["a<b>&c", 1760510430, 30],
  [
    "live://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://xlive://x",
    2997706053,
    5,
  ],
  ["video://éééééééééééééééééééééééééééééééééééééééé", 4261882037, 53],
];

Deno.test("cityHash32 matches github.com/zhenjl/cityhash on lengths 0..130, 255, 256, 1000, 4096", () => {
  // Every branch: 0..4 (signed bytes), 5..12, 13..24, and 25+ with 1..204 20-byte blocks.
  for (const [n, want] of PATTERN_VECTORS) {
    assert.equal(cityHash32(pattern(n)), want, `length ${n}`);
  }
  assert.equal(PATTERN_VECTORS.length, 131 + 4);
});

Deno.test("cityHash32 % 64 picks goim's ol_<server> field for UTF-8 rooms", () => {
  const utf8 = new TextEncoder();
  for (const [room, hash, field] of ROOM_VECTORS) {
    const h = cityHash32(utf8.encode(room));
    assert.equal(h, hash, room);
    assert.equal(h % 64, field, room);
  }
});

Deno.test("cityHash32 returns an unsigned 32-bit integer and does not mutate its input", () => {
  for (let n = 0; n < 64; n++) {
    const b = pattern(n);
    const copy = b.slice();
    const h = cityHash32(b);
    assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff, `length ${n}: ${h}`);
    assert.deepEqual(b, copy);
  }
  // A view into a larger buffer hashes only its own bytes.
  const big = pattern(200);
  assert.equal(cityHash32(big.subarray(10, 40)), cityHash32(big.slice(10, 40)));
});
