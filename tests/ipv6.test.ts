/**
 * IPv6 parsing and RFC 5952 formatting, against Node's URL parser as the oracle (WHATWG's IPv6
 * serializer compresses the first longest run of two or more zero groups, as RFC 5952 does).
 */
import fc from "fast-check";
import { formatAddress6, networkOf6, overlaps6, parseAddress6, parsePrefixed6 } from "../config/ipv6";

const urlForm = (text: string) => new URL(`http://[${text}]/`).hostname.slice(1, -1);
const hex = (value: bigint) => value.toString(16).padStart(32, "0");
const expanded = (value: bigint) => hex(value).match(/.{4}/g)!.join(":");
/** Addresses with runs of zero groups, where compression has choices to get wrong. */
const address = fc
  .array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
    minLength: 8,
    maxLength: 8,
  })
  .map((groups) => groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n));

describe("IPv6 addresses", () => {
  it("are written as RFC 5952 says, and read back to the same value from any form", () => {
    fc.assert(
      fc.property(address, (value) => {
        const text = formatAddress6(value);
        expect(text).toBe(urlForm(expanded(value)));
        expect(parseAddress6(text)).toBe(value);
        expect(parseAddress6(expanded(value))).toBe(value);
        expect(parseAddress6(expanded(value).toUpperCase())).toBe(value);
      }),
      { numRuns: 2000 },
    );
  });

  it.each([
    ["::", 0n],
    ["::1", 1n],
    ["1::", 1n << 112n],
    ["::ffff:192.0.2.1", 0xffffc0000201n],
    ["64:ff9b::192.0.2.1", (0x64ff9bn << 96n) | 0xc0000201n],
  ])("reads %s", (text, value) => {
    expect(parseAddress6(text)).toBe(value);
  });

  it.each([
    "",
    ":",
    ":::",
    "1:::2",
    "1::2::3",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::8",
    "12345::",
    "g::",
    "::192.0.2.256",
    "::1.2.3",
    "1.2.3.4",
    "fe80::1%eth0",
  ])("refuses %j", (text) => {
    expect(parseAddress6(text)).toBeUndefined();
  });
});

describe("IPv6 prefixes", () => {
  it("read an address and a prefix of at most 128", () => {
    expect(parsePrefixed6("2001:db8::7/64")).toEqual({ address: (0x20010db8n << 96n) | 7n, prefix: 64 });
    expect(parsePrefixed6("2001:db8::/129")).toBeUndefined();
    expect(parsePrefixed6("2001:db8::")).toBeUndefined();
  });

  it("clear the host bits for the network, and overlap exactly when one holds the other's network", () => {
    fc.assert(
      fc.property(
        address,
        fc.integer({ min: 0, max: 128 }),
        address,
        fc.integer({ min: 0, max: 128 }),
        (a, p, b, q) => {
          const x = { network: networkOf6(a, p), prefix: p };
          const y = { network: networkOf6(b, q), prefix: q };
          const shorter = Math.min(p, q);
          // Two blocks overlap exactly when they agree on the bits of the shorter prefix.
          expect(overlaps6(x, y)).toBe(networkOf6(x.network, shorter) === networkOf6(y.network, shorter));
          expect(networkOf6(x.network, p)).toBe(x.network);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
