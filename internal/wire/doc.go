// Package wire is the delegate protocol, written once for client and server:
// frame header, message types, descriptions (msgpack), the compact extent
// encoding, the lz4 policy and the portable error codes. spec.md beside this
// file is the prose form; the two must say the same thing.
//
// Descriptions travel as msgpack values; data never goes inside them. Data
// is either a frame's raw payload (after the description) or lives in the
// client's shared-memory ring and is named by offset and length.
//
// wire imports nothing else of this module.
package wire
