#include "repo/index.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

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

using json = nlohmann::json;

Result<uint32_t> U32Field(const json& j, const char* key, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return Status::Corruption(fmt::format("index: missing field {}", key));
    return 0u;
  }
  if (!it->is_number_unsigned() || it->get<uint64_t>() > UINT32_MAX) {
    return Status::Corruption(fmt::format("index: field {} is not a 32-bit unsigned number", key));
  }
  return static_cast<uint32_t>(it->get<uint64_t>());
}

Result<Id> IdField(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) {
    return Status::Corruption(fmt::format("index: missing or non-string field {}", key));
  }
  Result<Id> id = Id::FromHex(it->get_ref<const std::string&>());
  if (!id.ok()) return Status::Corruption("index: " + id.status().message());
  return id;
}

Result<IndexFile::Pack> ParsePack(const json& p, uint32_t repo_version) {
  if (!p.is_object()) return Status::Corruption("index: pack entry is not an object");
  IndexFile::Pack pack;
  FSB_ASSIGN_OR_RETURN(pack.id, IdField(p, "id"));
  auto blobs = p.find("blobs");
  if (blobs == p.end() || !blobs->is_array()) {
    return Status::Corruption(fmt::format("index: pack {} has no blobs array", pack.id.Short()));
  }
  pack.blobs.reserve(blobs->size());
  for (const json& b : *blobs) {
    if (!b.is_object()) return Status::Corruption("index: blob entry is not an object");
    PackedBlob pb;
    FSB_ASSIGN_OR_RETURN(pb.id, IdField(b, "id"));
    auto type = b.find("type");
    if (type == b.end() || !type->is_string()) return Status::Corruption("index: blob without type");
    const std::string& t = type->get_ref<const std::string&>();
    if (t == "data") {
      pb.type = BlobType::kData;
    } else if (t == "tree") {
      pb.type = BlobType::kTree;
    } else {
      return Status::Corruption(fmt::format("index: blob {} has invalid type \"{}\"", pb.id.Short(), t));
    }
    FSB_ASSIGN_OR_RETURN(pb.offset, U32Field(b, "offset", true));
    FSB_ASSIGN_OR_RETURN(pb.length, U32Field(b, "length", true));
    FSB_ASSIGN_OR_RETURN(pb.uncompressed_length, U32Field(b, "uncompressed_length", false));
    if (pb.uncompressed_length != 0 && repo_version < 2) {
      return Status::Corruption("index uses feature not supported by repository version 1");
    }
    if (pb.length < 32) {
      return Status::Corruption(fmt::format("index: blob {} has length {} below 32", pb.id.Short(), pb.length));
    }
    pack.blobs.push_back(pb);
  }
  return pack;
}

}  // namespace

Result<IndexFile> DecodeIndexFile(ByteView data, uint32_t repo_version) {
  json j = json::parse(data.begin(), data.end(), nullptr, false);
  if (j.is_discarded()) return Status::Corruption("index: malformed JSON");
  IndexFile f;
  const json* packs = nullptr;
  if (j.is_array()) {
    packs = &j;  // legacy format (restic < 0.2): the packs array itself
  } else if (j.is_object()) {
    auto it = j.find("packs");
    if (it == j.end() || !(it->is_array() || it->is_null())) {
      return Status::Corruption("index: missing packs array");
    }
    packs = &*it;
    auto sup = j.find("supersedes");
    if (sup != j.end() && !sup->is_null()) {
      if (!sup->is_array()) return Status::Corruption("index: supersedes is not an array");
      for (const json& s : *sup) {
        if (!s.is_string()) return Status::Corruption("index: supersedes entry is not a string");
        Result<Id> id = Id::FromHex(s.get_ref<const std::string&>());
        if (!id.ok()) return Status::Corruption("index: supersedes: " + id.status().message());
        f.supersedes.push_back(*id);
      }
    }
  } else {
    return Status::Corruption("index: top level is neither object nor array");
  }
  if (packs->is_array()) {
    f.packs.reserve(packs->size());
    for (const json& p : *packs) {
      FSB_ASSIGN_OR_RETURN(IndexFile::Pack pack, ParsePack(p, repo_version));
      f.packs.push_back(std::move(pack));
    }
  }
  return f;
}

}  // namespace fsb::repo
