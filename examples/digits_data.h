#pragma once
// The 8×8 handwritten digits that Debian's python3-sklearn ships (1 797 images: 64 pixel
// values 0–16, then the label, per line of a gzip-compressed CSV), for the examples.
#include <downhill/downhill.h>
#include <torch/torch.h>
#include <zlib.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace digits {

inline constexpr int64_t kSide = 8;  // images are kSide × kSide pixels
inline constexpr int64_t kPixels = kSide * kSide;
inline constexpr double kMaxPixel = 16.0;  // pixel values are 0..16
inline const char* const kDefaultPath =
    "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

// The whole decompressed content of a gzip file.
inline std::string read_gzip(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) {
    throw std::runtime_error("cannot open " + path + " (install python3-sklearn, or pass --data)");
  }
  std::string content;
  std::vector<char> chunk(1 << 16);
  int read = 0;
  while ((read = gzread(file, chunk.data(), static_cast<unsigned>(chunk.size()))) > 0) {
    content.append(chunk.data(), static_cast<size_t>(read));
  }
  int error = Z_OK;
  const std::string message = read < 0 ? gzerror(file, &error) : "";
  gzclose(file);
  if (read < 0) throw std::runtime_error("cannot decompress " + path + ": " + message);
  return content;
}

struct Images {
  torch::Tensor pixels;  // N × 64 float32, scaled to [0, 1]
  torch::Tensor labels;  // N int64, 0..9
};

// Every image of the file, in file order.
inline Images load(const std::string& path = kDefaultPath) {
  std::istringstream lines(read_gzip(path));
  std::vector<float> pixels;
  std::vector<int64_t> labels;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(lines, line)) {
    ++line_number;
    if (line.empty()) continue;
    std::vector<double> fields;
    std::istringstream cells(line);
    std::string cell;
    while (std::getline(cells, cell, ',')) fields.push_back(std::stod(cell));
    if (static_cast<int64_t>(fields.size()) != kPixels + 1) {
      throw std::runtime_error(path + ":" + std::to_string(line_number) + ": expected " +
                               std::to_string(kPixels + 1) + " values, got " +
                               std::to_string(fields.size()));
    }
    for (int64_t p = 0; p < kPixels; ++p) {
      pixels.push_back(static_cast<float>(fields[p] / kMaxPixel));
    }
    labels.push_back(static_cast<int64_t>(fields.back()));
  }
  const auto rows = static_cast<int64_t>(labels.size());
  if (rows == 0) throw std::runtime_error("no images in " + path);
  return {torch::from_blob(pixels.data(), {rows, kPixels}, torch::kFloat32).clone(),
          torch::tensor(labels, torch::kInt64)};
}

/// A random fifth of the images held out for validation (drawn from LibTorch's global
/// generator), the rest for training.
struct Split {
  torch::Tensor x_train, y_train, x_valid, y_valid;
};

inline Split hold_out_fifth(const Images& images) {
  const int64_t count = images.labels.size(0), valid_count = count / 5;
  const auto order = torch::randperm(count);
  const auto valid_index = order.slice(0, 0, valid_count),
             train_index = order.slice(0, valid_count);
  return {images.pixels.index_select(0, train_index), images.labels.index_select(0, train_index),
          images.pixels.index_select(0, valid_index), images.labels.index_select(0, valid_index)};
}

/// The classifiers' MLP, 64 → 128 → 10. One layer per statement: the arguments of a single
/// call are evaluated in an unspecified order, which would make the initial weights
/// compiler-dependent.
struct Mlp : torch::nn::Module {
  Mlp() {
    hidden = register_module("hidden", torch::nn::Linear(kPixels, 128));
    output = register_module("output", torch::nn::Linear(128, 10));
  }
  torch::Tensor forward(const torch::Tensor& x) { return output(torch::relu(hidden(x))); }

  torch::nn::Linear hidden{nullptr};
  torch::nn::Linear output{nullptr};
};

/// Cross-entropy with the batch's accuracy as the monitor "acc".
inline downhill::Evaluation classification_loss(Mlp& model, const downhill::Batch& batch) {
  const auto logits = model.forward(batch[0]);
  return {torch::nn::functional::cross_entropy(logits, batch[1]),
          {{"acc", logits.argmax(1).eq(batch[1]).to(torch::kFloat).mean()}}};
}

}  // namespace digits
