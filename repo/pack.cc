#include "repo/pack.h"

#include <fmt/format.h>

#include <bit>
#include <cstring>
#include <memory>

#include "repo/backend/backend.h"

namespace fsb::repo {

std::string_view BlobTypeName(BlobType t) { return t == BlobType::kTree ? "tree" : "data"; }

bool LooksIncompressible(ByteView b) {
  constexpr size_t kSample = 256;
  constexpr int kMinDistinct = 148;
  if (b.size() < 2 * kSample) return false;
  auto random_at = [&](size_t at) {
    uint64_t seen[4] = {0, 0, 0, 0};
    for (size_t i = at; i < at + kSample; i++) seen[b[i] >> 6] |= uint64_t{1} << (b[i] & 63);
    const int distinct = std::popcount(seen[0]) + std::popcount(seen[1]) + std::popcount(seen[2]) +
                         std::popcount(seen[3]);
    return distinct >= kMinDistinct;
  };
  if (!random_at(0) || !random_at(b.size() / 2 - kSample / 2) || !random_at(b.size() - kSample)) {
    return false;
  }
  // Bigger blobs: one more sample every kIncompressibleSampleStride bytes.
  for (size_t at = kIncompressibleSampleStride; at + kSample < b.size();
       at += kIncompressibleSampleStride) {
    if (!random_at(at)) return false;
  }
  return true;
}

namespace {

// A sealed blob opened into an uninitialised buffer (the caller reads it once: a Bytes would be
// zero-filled first, for nothing).
struct Opened {
  std::unique_ptr<uint8_t[]> data;
  size_t size = 0;
  ByteView view() const { return ByteView(data.get(), size); }
};

Result<Opened> OpenUninitialised(const CryptoKey& key, ByteView sealed) {
  if (sealed.size() < kCryptoOverhead) return VerifyMac(key, sealed);  // its error
  Opened o;
  o.size = sealed.size() - kCryptoOverhead;
  o.data = std::make_unique_for_overwrite<uint8_t[]>(o.size);
  FSB_RETURN_IF_ERROR(OpenInto(key, sealed, MutableByteView(o.data.get(), o.size)));
  return o;
}

}  // namespace

Bytes EncodeBlob(const CryptoKey& key, BlobType type, ByteView plain, uint32_t repo_version,
                 CompressionMode mode, uint32_t* uncompressed_length) {
  FSB_CHECK(!plain.empty());  // restic never writes empty blobs (§6)
  bool compress = repo_version >= 2 && (type == BlobType::kTree || mode != CompressionMode::kOff);
  if (compress && type == BlobType::kData && mode == CompressionMode::kAuto &&
      LooksIncompressible(plain)) {
    compress = false;
  }
  if (!compress) {
    *uncompressed_length = 0;
    return Seal(key, plain);
  }
  *uncompressed_length = static_cast<uint32_t>(plain.size());
  // The frame goes into an uninitialised buffer (a Bytes would be zero-filled first, for nothing).
  const size_t bound = ZstdCompressBound(plain.size());
  std::unique_ptr<uint8_t[]> frame = std::make_unique_for_overwrite<uint8_t[]>(bound);
  const size_t n = ZstdCompressInto(plain, mode == CompressionMode::kOff ? CompressionMode::kAuto : mode,
                                    MutableByteView(frame.get(), bound));
  return Seal(key, ByteView(frame.get(), n));
}

Result<Bytes> EncodeBlobChecked(const CryptoKey& key, BlobType type, ByteView plain,
                                uint32_t repo_version, CompressionMode mode,
                                uint32_t* uncompressed_length,
                                const std::function<bool(ByteView decoded)>& same_as_hashed) {
  Bytes stored = EncodeBlob(key, type, plain, repo_version, mode, uncompressed_length);
  auto same = [&](ByteView decoded) {
    if (same_as_hashed) return same_as_hashed(decoded);
    return decoded.size() == plain.size() && std::memcmp(decoded.data(), plain.data(), plain.size()) == 0;
  };
  auto fail = [&](std::string_view what) {
    return Status::Internal(fmt::format("{} blob of {} bytes: encoded form {} (memory corruption?); "
                                        "not stored",
                                        BlobTypeName(type), plain.size(), what));
  };
  // Decrypted and decompressed into uninitialised buffers: both are overwritten in full.
  Result<Opened> opened = OpenUninitialised(key, stored);
  if (!opened.ok()) return fail("does not open");
  if (*uncompressed_length != 0) {
    std::unique_ptr<uint8_t[]> back = std::make_unique_for_overwrite<uint8_t[]>(*uncompressed_length);
    const MutableByteView back_view(back.get(), *uncompressed_length);
    if (!ZstdDecompressInto(opened->view(), back_view).ok() || !same(back_view)) {
      return fail("does not decompress to the hashed input");
    }
  } else if (!same(opened->view())) {
    return fail("does not decrypt to the hashed input");
  }
  return stored;
}

namespace {

std::string BlobName(const PackedBlob& blob) {
  return fmt::format("{} blob {}", BlobTypeName(blob.type), blob.id.Short());
}

Status CheckBlobContent(const PackedBlob& blob, ByteView plain) {
  if (Id::Hash(plain) != blob.id) {
    return Status::Corruption(BlobName(blob) + ": content does not match its id");
  }
  return Status::Ok();
}

}  // namespace

Result<Bytes> DecodeBlob(const CryptoKey& key, const PackedBlob& blob, ByteView stored) {
  auto name = [&] { return BlobName(blob); };
  Bytes plain;
  if (blob.uncompressed_length != 0) {
    // The frame is decrypted into an uninitialised buffer; only the result is a Bytes.
    Result<Opened> frame = OpenUninitialised(key, stored);
    if (!frame.ok()) return frame.status().WithContext(name());
    Result<Bytes> d = ZstdDecompressExact(frame->view(), blob.uncompressed_length);
    if (!d.ok()) return d.status().WithContext(name());
    plain = std::move(*d);
  } else {
    Result<Bytes> opened = Open(key, stored);
    if (!opened.ok()) return opened.status().WithContext(name());
    plain = std::move(*opened);
  }
  FSB_RETURN_IF_ERROR(CheckBlobContent(blob, plain));
  return plain;
}

Result<ByteView> DecodeBlobInPlace(const CryptoKey& key, const PackedBlob& blob,
                                   MutableByteView stored, ScratchBuffer& scratch) {
  Result<MutableByteView> opened = OpenInPlace(key, stored);
  if (!opened.ok()) return opened.status().WithContext(BlobName(blob));
  ByteView plain = *opened;
  if (blob.uncompressed_length != 0) {
    Result<ByteView> d = ZstdDecompressExact(*opened, blob.uncompressed_length, scratch);
    if (!d.ok()) return d.status().WithContext(BlobName(blob));
    plain = *d;
  }
  FSB_RETURN_IF_ERROR(CheckBlobContent(blob, plain));
  return plain;
}

void PackBuilder::Add(BlobType type, const Id& id, ByteView stored, uint32_t uncompressed_length) {
  PackedBlob b;
  b.type = type;
  b.id = id;
  b.offset = static_cast<uint32_t>(data_.size());
  b.length = static_cast<uint32_t>(stored.size());
  b.uncompressed_length = uncompressed_length;
  blobs_.push_back(b);
  header_size_ += PackHeaderEntrySize(uncompressed_length);
  Append(data_, stored);
}

void AppendPackHeader(const CryptoKey& key, const std::vector<PackedBlob>& blobs, Bytes& out) {
  Bytes header;
  header.reserve(blobs.size() * kCompressedEntrySize);
  for (const auto& b : blobs) {
    // §7.1: type byte 0/1 plain, 2/3 zstd.
    uint8_t t = static_cast<uint8_t>(b.type) + (b.uncompressed_length ? 2 : 0);
    header.push_back(t);
    AppendLE32(header, b.length);
    if (b.uncompressed_length) AppendLE32(header, b.uncompressed_length);
    header.insert(header.end(), b.id.bytes.begin(), b.id.bytes.end());
  }
  const size_t before = out.size();
  SealAppend(key, header, out);
  AppendLE32(out, static_cast<uint32_t>(out.size() - before));
}

Bytes PackBuilder::Finish(const CryptoKey& key, std::vector<PackedBlob>* blobs) {
  Bytes pack = std::move(data_);
  AppendPackHeader(key, blobs_, pack);
  *blobs = std::move(blobs_);
  data_ = Bytes();
  blobs_.clear();
  header_size_ = 0;
  return pack;
}

Result<std::vector<PackedBlob>> ParsePackHeader(const CryptoKey& key, const Id& pack_id,
                                                uint64_t pack_size, ByteView tail,
                                                uint32_t repo_version, uint64_t* need_bytes) {
  auto corrupt = [&](const std::string& what) {
    return Status::Corruption(fmt::format("pack {}: {}", pack_id.Short(), what));
  };
  *need_bytes = 0;
  if (pack_size < kMinPackSize) {
    return corrupt(fmt::format("size {} below minimum {}", pack_size, kMinPackSize));
  }
  if (tail.size() < 4 || tail.size() > pack_size) return corrupt("bad tail");
  const uint32_t header_len = DecodeLE32(tail.data() + tail.size() - 4);
  if (header_len < kCryptoOverhead + kPlainEntrySize || header_len > pack_size - 4 ||
      header_len > kMaxHeaderSize) {
    return corrupt(fmt::format("invalid header length {}", header_len));
  }
  if (uint64_t(header_len) + 4 > tail.size()) {
    *need_bytes = uint64_t(header_len) + 4;
    return std::vector<PackedBlob>{};
  }
  ByteView sealed = tail.subspan(tail.size() - 4 - header_len, header_len);
  Result<Bytes> header = Open(key, sealed);
  if (!header.ok()) return header.status().WithContext(fmt::format("pack {} header", pack_id.Short()));
  std::vector<PackedBlob> blobs;
  const uint64_t data_end = pack_size - 4 - header_len;
  uint64_t offset = 0;
  const Bytes& h = *header;
  size_t pos = 0;
  while (pos < h.size()) {
    uint8_t t = h[pos];
    if (t > 3) return corrupt(fmt::format("unknown blob type {} in header", t));
    if (t >= 2 && repo_version < 2) return corrupt("compressed blob in a version 1 repository");
    size_t entry = t >= 2 ? kCompressedEntrySize : kPlainEntrySize;
    if (pos + entry > h.size()) return corrupt("truncated header entry");
    PackedBlob b;
    b.type = (t & 1) ? BlobType::kTree : BlobType::kData;
    b.length = DecodeLE32(&h[pos + 1]);
    size_t id_pos = pos + 5;
    if (t >= 2) {
      b.uncompressed_length = DecodeLE32(&h[pos + 5]);
      id_pos += 4;
    }
    std::copy(h.begin() + id_pos, h.begin() + id_pos + 32, b.id.bytes.begin());
    b.offset = static_cast<uint32_t>(offset);
    offset += b.length;
    if (b.length < kCryptoOverhead || offset > data_end) {
      return corrupt(fmt::format("blob {} exceeds the pack", b.id.Short()));
    }
    blobs.push_back(b);
    pos += entry;
  }
  if (blobs.empty()) return corrupt("empty header");
  if (offset != data_end) {
    return corrupt(fmt::format("{} unlisted bytes before the header", data_end - offset));
  }
  return blobs;
}

Result<std::vector<PackedBlob>> ReadPackHeader(Backend& backend, const CryptoKey& key,
                                               const Id& pack_id, uint64_t pack_size,
                                               uint32_t repo_version) {
  Handle h{FileType::kPack, pack_id.Hex()};
  if (pack_size < kMinPackSize) {
    return Status::Corruption(
        fmt::format("pack {}: size {} below minimum {}", pack_id.Short(), pack_size, kMinPackSize));
  }
  // Like restic: read enough for ~15 compressed entries eagerly, then the rest if needed.
  uint64_t want = std::min<uint64_t>(pack_size, 15 * kCompressedEntrySize + kCryptoOverhead + 4);
  for (int attempt = 0; attempt < 2; attempt++) {
    FSB_ASSIGN_OR_RETURN(Bytes tail, backend.Load(h, pack_size - want, want));
    uint64_t need = 0;
    FSB_ASSIGN_OR_RETURN(std::vector<PackedBlob> blobs,
                         ParsePackHeader(key, pack_id, pack_size, tail, repo_version, &need));
    if (need == 0) return blobs;
    want = need;
  }
  return Status::Corruption(fmt::format("pack {}: header could not be read", pack_id.Short()));
}

}  // namespace fsb::repo
