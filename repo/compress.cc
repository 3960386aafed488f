#include "repo/compress.h"

#include <zstd.h>

#include <algorithm>
#include <memory>
#include <string>

namespace fsb::repo {
namespace {

// restic-repo-format.md §6: "auto" is zstd's default speed (level 3), "max" the best ratio.
constexpr int kAutoLevel = 3;
constexpr int kMaxLevel = 19;
// §5: the first plaintext byte of a v2 unpacked file that says "zstd follows".
constexpr uint8_t kUnpackedZstd = 0x02;
// First output buffer of a streaming decompression whose frame does not record its size.
constexpr size_t kStreamInitialBytes = 64 * 1024;
// No zstd frame expands more than this: a block yields at most 128 KiB and takes at least 4 bytes
// (an RLE block). Used to refuse absurd sizes before allocating them.
constexpr uint64_t kMaxRatio = 32 * 1024;

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// One context per thread, reset per call: a ZSTD_CCtx holds ~1-2 MiB of tables whose allocation
// would otherwise dominate compressing small blobs.
ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> cctx(ZSTD_createCCtx());
  FSB_CHECK(cctx != nullptr);
  return cctx.get();
}

ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> dctx(ZSTD_createDCtx());
  FSB_CHECK(dctx != nullptr);
  return dctx.get();
}

std::string ZstdError(size_t code) { return ZSTD_getErrorName(code); }

// Compresses `plain` into `dst` (capacity >= ZSTD_compressBound) and returns the frame length.
size_t CompressInto(ByteView plain, CompressionMode mode, uint8_t* dst, size_t capacity) {
  FSB_CHECK(mode != CompressionMode::kOff);
  ZSTD_CCtx* cctx = ThreadCCtx();
  FSB_CHECK(!ZSTD_isError(ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters)));
  const int level = mode == CompressionMode::kMax ? kMaxLevel : kAutoLevel;
  FSB_CHECK(!ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)));
  FSB_CHECK(!ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0)));
  FSB_CHECK(!ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)));
  const size_t n = ZSTD_compress2(cctx, dst, capacity, plain.data(), plain.size());
  // With a ZSTD_compressBound-sized buffer only an allocation failure can make this fail.
  FSB_CHECK(!ZSTD_isError(n));
  return n;
}

}  // namespace

size_t ZstdCompressBound(size_t plain_size) { return ZSTD_compressBound(plain_size); }

size_t ZstdCompressInto(ByteView plain, CompressionMode mode, MutableByteView dst) {
  FSB_CHECK(dst.size() >= ZSTD_compressBound(plain.size()));
  return CompressInto(plain, mode, dst.data(), dst.size());
}

Bytes ZstdCompress(ByteView plain, CompressionMode mode) {
  Bytes out(ZSTD_compressBound(plain.size()));
  out.resize(CompressInto(plain, mode, out.data(), out.size()));
  return out;
}

namespace {

// What can be told without decompressing: a valid first frame that states no more than
// `expected_size`, of a length that can hold it. Checked before any output buffer is allocated
// (a size from a corrupt index must not become a huge buffer).
Status CheckFrameFor(ByteView frame, uint64_t expected_size) {
  const unsigned long long stated = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (stated == ZSTD_CONTENTSIZE_ERROR) return Status::Corruption("zstd: not a valid frame");
  if (stated != ZSTD_CONTENTSIZE_UNKNOWN && stated > expected_size) {
    return Status::Corruption("zstd: frame holds " + std::to_string(stated) + " bytes, want " +
                              std::to_string(expected_size));
  }
  if (expected_size / kMaxRatio > frame.size() || expected_size > SIZE_MAX) {
    return Status::Corruption("zstd: " + std::to_string(frame.size()) + "-byte frame cannot hold " +
                              std::to_string(expected_size) + " bytes");
  }
  return Status::Ok();
}

// Decompresses a frame CheckFrameFor accepted into exactly out.size() bytes.
Status DecompressChecked(ByteView frame, MutableByteView out) {
  const size_t n =
      ZSTD_decompressDCtx(ThreadDCtx(), out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) {
    return Status::Corruption("zstd: " + ZstdError(n) + " (want " + std::to_string(out.size()) +
                              " bytes)");
  }
  if (n != out.size()) {
    return Status::Corruption("zstd: frame holds " + std::to_string(n) + " bytes, want " +
                              std::to_string(out.size()));
  }
  return Status::Ok();
}

}  // namespace

Status ZstdDecompressInto(ByteView frame, MutableByteView out) {
  FSB_RETURN_IF_ERROR(CheckFrameFor(frame, out.size()));
  return DecompressChecked(frame, out);
}

Result<Bytes> ZstdDecompressExact(ByteView frame, uint64_t expected_size) {
  FSB_RETURN_IF_ERROR(CheckFrameFor(frame, expected_size));
  Bytes out(expected_size);
  FSB_RETURN_IF_ERROR(DecompressChecked(frame, out));
  return out;
}

Result<ByteView> ZstdDecompressExact(ByteView frame, uint64_t expected_size,
                                     ScratchBuffer& scratch) {
  FSB_RETURN_IF_ERROR(CheckFrameFor(frame, expected_size));
  const MutableByteView out = scratch.Get(static_cast<size_t>(expected_size));
  FSB_RETURN_IF_ERROR(DecompressChecked(frame, out));
  return ByteView(out);
}

Result<Bytes> ZstdDecompressStream(ByteView frame, uint64_t max_size) {
  ZSTD_DCtx* dctx = ThreadDCtx();
  FSB_CHECK(!ZSTD_isError(ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only)));
  // One byte beyond the limit lets us tell "exactly max_size" from "more than max_size".
  const uint64_t cap = max_size == UINT64_MAX ? max_size : max_size + 1;
  const unsigned long long stated = ZSTD_getFrameContentSize(frame.data(), frame.size());
  uint64_t initial = kStreamInitialBytes;
  if (stated != ZSTD_CONTENTSIZE_UNKNOWN && stated != ZSTD_CONTENTSIZE_ERROR) {
    initial = stated;  // exact for a single frame; more frames grow the buffer below
  }
  initial = std::min<uint64_t>(initial, uint64_t(frame.size()) * kMaxRatio);
  initial = std::min<uint64_t>({initial, cap, SIZE_MAX});
  Bytes out(initial);
  ZSTD_inBuffer in{frame.data(), frame.size(), 0};
  size_t produced = 0;
  for (;;) {
    if (produced == out.size()) {
      if (out.size() >= cap || out.size() >= SIZE_MAX / 2) {
        return Status::Corruption("zstd: decompressed data exceeds " + std::to_string(max_size) +
                                  " bytes");
      }
      out.resize(std::min<uint64_t>(std::max<uint64_t>(out.size() * 2, kStreamInitialBytes), cap));
    }
    ZSTD_outBuffer ob{out.data(), out.size(), produced};
    const size_t ret = ZSTD_decompressStream(dctx, &ob, &in);
    produced = ob.pos;
    if (ZSTD_isError(ret)) return Status::Corruption("zstd: " + ZstdError(ret));
    if (ret == 0 && in.pos == in.size) break;  // last frame complete and flushed
    if (in.pos == in.size && produced < out.size()) {
      return Status::Corruption("zstd: truncated frame");
    }
  }
  if (produced > max_size) {
    return Status::Corruption("zstd: decompressed data exceeds " + std::to_string(max_size) +
                              " bytes");
  }
  out.resize(produced);
  return out;
}

Bytes EncodeUnpacked(ByteView json, uint32_t repo_version) {
  FSB_CHECK(repo_version == 1 || repo_version == 2);
  if (repo_version == 1) return Bytes(json.begin(), json.end());
  Bytes out(1 + ZSTD_compressBound(json.size()));
  out[0] = kUnpackedZstd;
  out.resize(1 + CompressInto(json, CompressionMode::kAuto, out.data() + 1, out.size() - 1));
  return out;
}

Result<Bytes> DecodeUnpacked(ByteView plain, uint32_t repo_version) {
  if (repo_version == 1) return Bytes(plain.begin(), plain.end());
  if (repo_version != 2) {
    return Status::InvalidArgument("unsupported repository version " +
                                   std::to_string(repo_version));
  }
  // §5: empty passes through (and then fails JSON parsing); raw JSON is accepted for back-compat.
  if (plain.empty() || plain[0] == '{' || plain[0] == '[') return Bytes(plain.begin(), plain.end());
  if (plain[0] != kUnpackedZstd) {
    return Status::Corruption("not supported encoding format: first byte 0x" +
                              HexEncode(plain.first(1)));
  }
  Result<Bytes> json = ZstdDecompressStream(plain.subspan(1));
  if (!json.ok()) return json.status().WithContext("unpacked file");
  return json;
}

}  // namespace fsb::repo
