#include "repo/index.h"

#include <fmt/format.h>

#include "repo/internal/json_reader.h"

namespace fsb::repo {
namespace {

constexpr uint32_t kTreeBit = 1u << 31;

size_t SlotHash(BlobType type, const Id& id) {
  return IdHash()(id) ^ (type == BlobType::kTree ? 0x9e3779b97f4a7c15ULL : 0);
}

}  // namespace

Index::Index() : slots_(1024) {}

uint32_t Index::InternPack(const Id& pack) {
  auto [it, inserted] = pack_lookup_.try_emplace(pack, static_cast<uint32_t>(packs_.size()));
  if (inserted) packs_.push_back(pack);
  return it->second;
}

size_t Index::Probe(BlobType type, const Id& id) const {
  const size_t mask = slots_.size() - 1;
  const uint32_t want_tree = type == BlobType::kTree ? kTreeBit : 0;
  for (size_t i = SlotHash(type, id) & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.pack_plus_one == 0) return i;
    if ((s.pack_plus_one & kTreeBit) == want_tree && s.id == id) return i;
  }
}

void Index::Grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.size() * 2, Slot{});
  for (const Slot& s : old) {
    if (s.pack_plus_one == 0) continue;
    BlobType t = (s.pack_plus_one & kTreeBit) ? BlobType::kTree : BlobType::kData;
    slots_[Probe(t, s.id)] = s;
  }
}

bool Index::Add(const Id& pack, const PackedBlob& blob) {
  if ((count_ + 1) * 4 > slots_.size() * 3) Grow();  // load factor ≤ 0.75
  size_t i = Probe(blob.type, blob.id);
  Slot& s = slots_[i];
  if (s.pack_plus_one != 0) return false;
  uint32_t p = InternPack(pack);
  FSB_CHECK(p + 1 < kTreeBit);
  s.id = blob.id;
  s.pack_plus_one = (p + 1) | (blob.type == BlobType::kTree ? kTreeBit : 0);
  s.offset = blob.offset;
  s.length = blob.length;
  s.uncompressed_length = blob.uncompressed_length;
  count_++;
  return true;
}

std::optional<BlobLocation> Index::Find(BlobType type, const Id& id) const {
  const Slot& s = slots_[Probe(type, id)];
  if (s.pack_plus_one == 0) return std::nullopt;
  BlobLocation loc;
  loc.pack = packs_[(s.pack_plus_one & ~kTreeBit) - 1];
  loc.blob = PackedBlob{type, id, s.offset, s.length, s.uncompressed_length};
  return loc;
}

bool Index::Has(BlobType type, const Id& id) const {
  return slots_[Probe(type, id)].pack_plus_one != 0;
}

void Index::ForEach(const std::function<void(const BlobLocation&)>& fn) const {
  for (const Slot& s : slots_) {
    if (s.pack_plus_one == 0) continue;
    BlobType t = (s.pack_plus_one & kTreeBit) ? BlobType::kTree : BlobType::kData;
    fn(BlobLocation{packs_[(s.pack_plus_one & ~kTreeBit) - 1],
                    PackedBlob{t, s.id, s.offset, s.length, s.uncompressed_length}});
  }
}

uint64_t Index::MemoryBytes() const {
  return slots_.capacity() * sizeof(Slot) + packs_.capacity() * sizeof(Id) +
         pack_lookup_.size() * (sizeof(Id) + 32);
}

std::string EncodeIndexFile(const IndexFile& f) {
  std::string out;
  out.reserve(64 + f.packs.size() * 100);
  out += '{';
  if (!f.supersedes.empty()) {
    out += "\"supersedes\":[";
    for (size_t i = 0; i < f.supersedes.size(); i++) {
      if (i) out += ',';
      out += '"';
      out += f.supersedes[i].Hex();
      out += '"';
    }
    out += "],";
  }
  out += "\"packs\":[";
  for (size_t i = 0; i < f.packs.size(); i++) {
    if (i) out += ',';
    out += "{\"id\":\"";
    out += f.packs[i].id.Hex();
    out += "\",\"blobs\":[";
    const auto& blobs = f.packs[i].blobs;
    for (size_t j = 0; j < blobs.size(); j++) {
      const PackedBlob& b = blobs[j];
      if (j) out += ',';
      fmt::format_to(std::back_inserter(out), "{{\"id\":\"{}\",\"type\":\"{}\",\"offset\":{},\"length\":{}",
                     b.id.Hex(), BlobTypeName(b.type), b.offset, b.length);
      if (b.uncompressed_length) {
        fmt::format_to(std::back_inserter(out), ",\"uncompressed_length\":{}", b.uncompressed_length);
      }
      out += '}';
    }
    out += "]}";
  }
  out += "]}\n";
  return out;
}

namespace {

using internal::JsonReader;

// Index files hold up to 150 000 blobs (tens of MB of JSON): they are read with the streaming
// reader, never as a DOM (nlohmann's DOM of one such file takes ~10x its size in memory).
struct IndexParser {
  JsonReader r;
  uint32_t version;
  std::string key_scratch, value_scratch;

  Result<Id> ReadId(const char* field) {
    std::string_view s;
    Status st = r.ReadString(s, value_scratch);
    if (!st.ok()) return Status::Corruption("index: " + std::string(field) + ": " + st.message());
    Result<Id> id = Id::FromHex(s);
    if (!id.ok()) return Status::Corruption("index: " + std::string(field) + ": " + id.status().message());
    return id;
  }

  Result<uint32_t> ReadU32(const char* field) {
    uint64_t v = 0;
    Status st = r.ReadUint(UINT32_MAX, v);
    if (!st.ok()) {
      return Status::Corruption(fmt::format("index: field {} is not a 32-bit unsigned number ({})", field,
                                            st.message()));
    }
    return static_cast<uint32_t>(v);
  }

  Result<PackedBlob> ParseBlob() {
    FSB_RETURN_IF_ERROR(Wrap(r.Expect('{')));
    PackedBlob b;
    bool first = true, has = false, have_id = false, have_type = false, have_off = false, have_len = false;
    for (;;) {
      std::string_view key;
      FSB_RETURN_IF_ERROR(Wrap(r.NextMember(first, has, key, key_scratch)));
      if (!has) break;
      if (key == "id") {
        FSB_ASSIGN_OR_RETURN(b.id, ReadId("blob id"));
        have_id = true;
      } else if (key == "type") {
        std::string_view t;
        FSB_RETURN_IF_ERROR(Wrap(r.ReadString(t, value_scratch)));
        if (t == "data") {
          b.type = BlobType::kData;
        } else if (t == "tree") {
          b.type = BlobType::kTree;
        } else {
          return Status::Corruption(fmt::format("index: blob has invalid type \"{}\"", t));
        }
        have_type = true;
      } else if (key == "offset") {
        FSB_ASSIGN_OR_RETURN(b.offset, ReadU32("offset"));
        have_off = true;
      } else if (key == "length") {
        FSB_ASSIGN_OR_RETURN(b.length, ReadU32("length"));
        have_len = true;
      } else if (key == "uncompressed_length") {
        if (!r.TryNull()) {
          FSB_ASSIGN_OR_RETURN(b.uncompressed_length, ReadU32("uncompressed_length"));
        }
      } else {
        FSB_RETURN_IF_ERROR(Wrap(r.SkipValue()));  // unknown fields are ignored, as restic does
      }
    }
    if (!have_id || !have_type || !have_off || !have_len) {
      return Status::Corruption("index: blob entry misses id, type, offset or length");
    }
    if (b.uncompressed_length != 0 && version < 2) {
      return Status::Corruption("index uses feature not supported by repository version 1");
    }
    if (b.length < kCryptoOverhead) {
      return Status::Corruption(fmt::format("index: blob {} has length {} below 32", b.id.Short(), b.length));
    }
    return b;
  }

  Result<IndexFile::Pack> ParsePack() {
    FSB_RETURN_IF_ERROR(Wrap(r.Expect('{')));
    IndexFile::Pack pack;
    bool first = true, has = false, have_id = false, have_blobs = false;
    for (;;) {
      std::string_view key;
      FSB_RETURN_IF_ERROR(Wrap(r.NextMember(first, has, key, key_scratch)));
      if (!has) break;
      if (key == "id") {
        FSB_ASSIGN_OR_RETURN(pack.id, ReadId("pack id"));
        have_id = true;
      } else if (key == "blobs") {
        FSB_RETURN_IF_ERROR(Wrap(r.Expect('[')));
        bool efirst = true, ehas = false;
        for (;;) {
          FSB_RETURN_IF_ERROR(Wrap(r.NextElement(efirst, ehas)));
          if (!ehas) break;
          FSB_ASSIGN_OR_RETURN(PackedBlob b, ParseBlob());
          pack.blobs.push_back(b);
        }
        have_blobs = true;
      } else {
        FSB_RETURN_IF_ERROR(Wrap(r.SkipValue()));
      }
    }
    if (!have_id) return Status::Corruption("index: pack entry without id");
    if (!have_blobs) return Status::Corruption(fmt::format("index: pack {} has no blobs array", pack.id.Short()));
    return pack;
  }

  Status ParsePacks(IndexFile& f) {
    if (r.TryNull()) return Status::Ok();
    FSB_RETURN_IF_ERROR(Wrap(r.Expect('[')));
    bool first = true, has = false;
    for (;;) {
      FSB_RETURN_IF_ERROR(Wrap(r.NextElement(first, has)));
      if (!has) return Status::Ok();
      FSB_ASSIGN_OR_RETURN(IndexFile::Pack p, ParsePack());
      f.packs.push_back(std::move(p));
    }
  }

  static Status Wrap(Status s) {
    if (s.ok()) return s;
    return Status::Corruption("index: " + s.message());
  }
};

}  // namespace

Result<IndexFile> DecodeIndexFile(ByteView data, uint32_t repo_version) {
  IndexParser p{JsonReader(AsString(data)), repo_version, {}, {}};
  IndexFile f;
  if (p.r.Peek() == '[') {
    FSB_RETURN_IF_ERROR(p.ParsePacks(f));  // legacy format (restic < 0.2): the packs array itself
  } else {
    if (p.r.Peek() != '{') return Status::Corruption("index: top level is neither object nor array");
    FSB_RETURN_IF_ERROR(IndexParser::Wrap(p.r.Expect('{')));
    bool first = true, has = false, have_packs = false;
    for (;;) {
      std::string_view key;
      FSB_RETURN_IF_ERROR(IndexParser::Wrap(p.r.NextMember(first, has, key, p.key_scratch)));
      if (!has) break;
      if (key == "packs") {
        FSB_RETURN_IF_ERROR(p.ParsePacks(f));
        have_packs = true;
      } else if (key == "supersedes") {
        if (p.r.TryNull()) continue;
        FSB_RETURN_IF_ERROR(IndexParser::Wrap(p.r.Expect('[')));
        bool efirst = true, ehas = false;
        for (;;) {
          FSB_RETURN_IF_ERROR(IndexParser::Wrap(p.r.NextElement(efirst, ehas)));
          if (!ehas) break;
          FSB_ASSIGN_OR_RETURN(Id id, p.ReadId("supersedes"));
          f.supersedes.push_back(id);
        }
      } else {
        FSB_RETURN_IF_ERROR(IndexParser::Wrap(p.r.SkipValue()));
      }
    }
    if (!have_packs) return Status::Corruption("index: missing packs array");
  }
  if (!p.r.AtEnd()) return Status::Corruption("index: trailing data after the JSON document");
  return f;
}

}  // namespace fsb::repo
