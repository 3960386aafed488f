// repo/compress.h: zstd for blobs and for "unpacked" files (index, snapshot, lock), as restic v2
// writes them (restic-repo-format.md §5, §6). Safe for concurrent use (contexts are per call, or
// thread-local).
#pragma once

#include <cstdint>

#include "base/bytes.h"
#include "base/status.h"

namespace fsb::repo {

enum class CompressionMode { kOff, kAuto, kMax };

// One zstd frame of `plain`: level 3 for kAuto, 19 for kMax; no checksum, content size recorded.
// kOff is a caller bug (FSB_CHECK).
Bytes ZstdCompress(ByteView plain, CompressionMode mode);
// ZstdCompress into `dst`, which must hold ZstdCompressBound(plain.size()) bytes; returns the frame
// length. For callers with a buffer of their own (no zero-filled allocation per blob).
size_t ZstdCompressInto(ByteView plain, CompressionMode mode, MutableByteView dst);
size_t ZstdCompressBound(size_t plain_size);
// Decompresses one frame that must yield exactly `expected_size` bytes (blobs: the index's
// uncompressed_length). kCorruption otherwise.
Result<Bytes> ZstdDecompressExact(ByteView frame, uint64_t expected_size);
// ZstdDecompressExact into `scratch` (grown only after the frame's checks); the result views it.
Result<ByteView> ZstdDecompressExact(ByteView frame, uint64_t expected_size,
                                     ScratchBuffer& scratch);
// ZstdDecompressExact into `out`, whose size is the expected size.
Status ZstdDecompressInto(ByteView frame, MutableByteView out);
// Decompresses in streaming mode (restic's frames may lack the content size), refusing output
// above `max_size`. kCorruption on a bad frame.
Result<Bytes> ZstdDecompressStream(ByteView frame, uint64_t max_size = uint64_t(1) << 32);

// §5: the plaintext of an unpacked file. v1: the JSON as is. v2: 0x02 || zstd(JSON).
Bytes EncodeUnpacked(ByteView json, uint32_t repo_version);
// v2 accepts 0x02+zstd or raw JSON starting with '{' or '['; v1 takes the bytes as JSON.
// kCorruption ("not supported encoding format") on any other first byte in v2.
Result<Bytes> DecodeUnpacked(ByteView plain, uint32_t repo_version);

}  // namespace fsb::repo
