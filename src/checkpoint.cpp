// The checkpoint file: a format tag with its version, the update engine's and the loop's
// fields (each part's schema), the global random generator's state, and a checksum trailer;
// written atomically.
#include "checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <downhill/dataset.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "atomic_file.h"
#include "checkpoint_schema.h"

namespace downhill::detail {

namespace {

constexpr char kFormatPrefix[] = "downhill-checkpoint-";

// The version of a format tag "downhill-checkpoint-<version>"; 0 for another tag.
int64_t format_version(const std::string& tag) {
  const std::string prefix = kFormatPrefix;
  if (tag.rfind(prefix, 0) != 0 || tag.size() == prefix.size() || tag.size() > prefix.size() + 9)
    return 0;
  int64_t version = 0;
  for (size_t k = prefix.size(); k < tag.size(); ++k) {
    if (tag[k] < '0' || tag[k] > '9') return 0;
    version = version * 10 + (tag[k] - '0');
  }
  return version;
}

// A checkpoint file is the archive followed by a trailer: kTrailerMagic, then the
// archive's 64-bit FNV-1a hash (little-endian), so that a flipped bit or a cut file is
// refused instead of loading as other numbers.
constexpr char kTrailerMagic[] = "DHCKSUM1";
constexpr size_t kMagicSize = sizeof kTrailerMagic - 1;
constexpr size_t kTrailerSize = kMagicSize + 8;

uint64_t fnv1a(const char* data, size_t size) {
  uint64_t hash = 14695981039346656037ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= 1099511628211ull;
  }
  return hash;
}

std::string with_checksum(std::string archive) {
  const uint64_t hash = fnv1a(archive.data(), archive.size());
  archive.append(kTrailerMagic, kMagicSize);
  for (int byte = 0; byte < 8; ++byte) archive.push_back(static_cast<char>(hash >> (8 * byte)));
  return archive;
}

// The file's archive, once its checksum matches; std::runtime_error naming the path otherwise.
std::string verified_payload(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    throw std::runtime_error("downhill: cannot read checkpoint '" + path +
                             "': it is a directory, not a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("downhill: cannot read checkpoint '" + path + "': no such file");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < kTrailerSize ||
      bytes.compare(bytes.size() - kTrailerSize, kMagicSize, kTrailerMagic) != 0) {
    throw std::runtime_error("downhill: cannot read checkpoint '" + path +
                             "': it is cut short or not a downhill checkpoint (no checksum "
                             "trailer at its end)");
  }
  uint64_t saved = 0;
  for (int byte = 0; byte < 8; ++byte) {
    saved |= static_cast<uint64_t>(
                 static_cast<unsigned char>(bytes[bytes.size() - 8 + static_cast<size_t>(byte)]))
             << (8 * byte);
  }
  bytes.resize(bytes.size() - kTrailerSize);
  if (fnv1a(bytes.data(), bytes.size()) != saved) {
    throw std::runtime_error("downhill: cannot read checkpoint '" + path +
                             "': it is damaged (its content does not match its checksum)");
  }
  return bytes;
}

}  // namespace

void save_checkpoint(const std::string& path, UpdateEngine& engine, const LoopState& loop,
                     const Dataset* train, const Dataset* valid) {
  torch::NoGradGuard no_grad;
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(checkpoint_format(kCheckpointVersion)));
  EntryWriter writer(archive);
  engine.save(writer);
  loop.save(writer, train, valid);
  at::Generator global = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    archive.write("rng_cpu", global.get_state());
  }
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomically(path, with_checksum(bytes.str()));
}

void load_checkpoint(const std::string& path, UpdateEngine& engine, LoopState& loop,
                     const Dataset* train, const Dataset* valid) {
  const std::string payload = verified_payload(path);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(payload.data(), payload.size());
  } catch (const c10::Error& e) {
    throw std::runtime_error("downhill: cannot read checkpoint '" + path +
                             "': " + e.what_without_backtrace());
  }
  c10::IValue format;
  if (!archive.try_read("format", format) || !format.isString() ||
      format_version(format.toStringRef()) == 0) {
    throw std::runtime_error("downhill: cannot read checkpoint '" + path +
                             "': it has no format tag 'downhill-checkpoint-<version>'");
  }
  const int64_t version = format_version(format.toStringRef());
  if (version < kOldestCheckpointVersion || version > kCheckpointVersion) {
    throw std::runtime_error(
        "downhill: cannot read checkpoint '" + path + "': it is of format version " +
        std::to_string(version) + " ('" + format.toStringRef() + "'); this downhill reads " +
        (kOldestCheckpointVersion == kCheckpointVersion
             ? "version " + std::to_string(kCheckpointVersion)
             : "versions " + std::to_string(kOldestCheckpointVersion) + " to " +
                   std::to_string(kCheckpointVersion)) +
        (version > kCheckpointVersion ? ", and a newer downhill wrote it" : ""));
  }

  // Read and check everything before changing anything.
  EntryReader reader(archive, path, version);
  auto engine_part = engine.read(reader);
  auto loop_part = loop.read(reader, engine.params(), train, valid);
  const auto rng_state = reader.generator_state("rng_cpu");

  // Everything read and checked: commit. The generator first, since set_state() is what
  // can still refuse (a malformed state); the parts' commits only copy checked tensors.
  at::Generator global = at::detail::getDefaultCPUGenerator();  // a handle to the same one
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    global.set_state(rng_state);
  }
  engine.commit(std::move(engine_part));
  loop.commit(std::move(loop_part));
}

}  // namespace downhill::detail
