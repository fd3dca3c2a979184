// Sparse factorization of real data: the 8×8 handwritten digits that Debian's
// python3-sklearn ships (1 797 images, 64 pixel values 0–16 then the label).
//
// Like downhill's MNIST example, the images X of one digit are approximated by
// a product of sparse codes U and a small basis V,
//   loss = mean((X − U·V)²) + 0.1·mean|U| + 0.01·mean(V²),
// trained with SGD and momentum 0.9 on mini-batches, validated on held-out
// images, and stopped early when the validation loss stops improving. Here the
// codes are computed from the images by a learned linear encoder, U = X·E, so
// that held-out images have codes too and the validation loss means something.
// The learned basis (the rows of V) is written as a PGM image grid.
//
// Usage: digits_factorization [--digit D] [--passes N] [--components K]
//                             [--learning-rate R] [--output PATH] [--data PATH]
//                             [--history PATH]
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "digits_data.h"

namespace {

using digits::kPixels;
using digits::kSide;

struct Settings {
  int digit = 3;
  std::optional<int64_t> passes;  // unset: early stopping alone ends the run
  int64_t components = 16;
  double learning_rate = 0.1;
  std::string output = "digits_basis.pgm";
  std::string data = digits::kDefaultPath;
  std::string history;  // empty: no history file
};

void print_usage(const char* program) {
  std::cerr << "usage: " << program
            << " [--digit D] [--passes N] [--components K] [--learning-rate R]\n"
               "       [--output PATH] [--data PATH] [--history PATH]\n"
               "  --digit D       train on the images of digit D (0-9, default 3)\n"
               "  --passes N      stop after at most N passes (default: early stopping only)\n"
               "  --components K  number of basis images (default 16)\n"
               "  --learning-rate R  SGD's learning rate (default 0.1)\n"
               "  --output PATH   where to write the basis as a PGM image (digits_basis.pgm)\n"
               "  --data PATH     the digits CSV, gzip-compressed (python3-sklearn's copy)\n"
               "  --history PATH  write one JSON line per pass (for scripts/plot_history.py)\n";
}

Settings parse_arguments(int argc, char** argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      print_usage(argv[0]);
      std::exit(0);
    }
    if (i + 1 >= argc) throw std::invalid_argument("missing value after " + flag);
    const std::string value = argv[++i];
    if (flag == "--digit") {
      settings.digit = std::stoi(value);
      if (settings.digit < 0 || settings.digit > 9) {
        throw std::invalid_argument("--digit must be 0..9, got " + value);
      }
    } else if (flag == "--passes") {
      settings.passes = std::stoll(value);
      if (*settings.passes < 1) throw std::invalid_argument("--passes must be >= 1, got " + value);
    } else if (flag == "--components") {
      settings.components = std::stoll(value);
      if (settings.components < 1) {
        throw std::invalid_argument("--components must be >= 1, got " + value);
      }
    } else if (flag == "--learning-rate") {
      settings.learning_rate = std::stod(value);
    } else if (flag == "--output") {
      settings.output = value;
    } else if (flag == "--data") {
      settings.data = value;
    } else if (flag == "--history") {
      settings.history = value;
    } else {
      throw std::invalid_argument("unknown option " + flag);
    }
  }
  return settings;
}

// The images of `digit`, one row each, pixels scaled to [0, 1].
torch::Tensor load_digit(const std::string& path, int digit) {
  const auto all = digits::load(path);
  const auto rows = all.pixels.index({all.labels == digit});
  if (rows.size(0) == 0) throw std::runtime_error("no images of digit " + std::to_string(digit));
  return rows;
}

// Writes the rows of `basis` (K × 64) as a grid of 8×8 tiles, each scaled to its
// own range (0 = black, 255 = white) and enlarged so that it is visible.
void write_pgm(const torch::Tensor& basis, const std::string& path) {
  constexpr int64_t kZoom = 4, kGap = 2;
  const int64_t count = basis.size(0);
  const auto columns = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(count))));
  const int64_t rows = (count + columns - 1) / columns;
  const int64_t tile = kSide * kZoom;
  const int64_t width = columns * (tile + kGap) + kGap, height = rows * (tile + kGap) + kGap;
  std::vector<unsigned char> image(static_cast<size_t>(width * height), 128);

  const auto values = basis.detach().to(torch::kFloat64).contiguous();
  const auto* data = values.data_ptr<double>();
  for (int64_t k = 0; k < count; ++k) {
    const double* row = data + k * kPixels;
    const auto [low, high] = std::minmax_element(row, row + kPixels);
    const double range = *high - *low > 0 ? *high - *low : 1.0;
    const int64_t left = kGap + (k % columns) * (tile + kGap);
    const int64_t top = kGap + (k / columns) * (tile + kGap);
    for (int64_t y = 0; y < tile; ++y) {
      for (int64_t x = 0; x < tile; ++x) {
        const double value = (row[(y / kZoom) * kSide + x / kZoom] - *low) / range;
        image[static_cast<size_t>((top + y) * width + left + x)] =
            static_cast<unsigned char>(std::lround(255.0 * value));
      }
    }
  }
  std::ofstream out(path, std::ios::binary);
  out << "P5\n" << width << " " << height << "\n255\n";
  out.write(reinterpret_cast<const char*>(image.data()),
            static_cast<std::streamsize>(image.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) try {
  const Settings settings = parse_arguments(argc, argv);
  torch::manual_seed(0);

  const auto images = load_digit(settings.data, settings.digit);
  const int64_t count = images.size(0);
  // A random fifth of the images is held out for validation.
  const auto order = torch::randperm(count);
  const int64_t valid_count = count / 5;
  const auto valid_images = images.index_select(0, order.slice(0, 0, valid_count));
  const auto train_images = images.index_select(0, order.slice(0, valid_count));
  std::cout << "digit " << settings.digit << ": " << count << " images, " << train_images.size(0)
            << " for training, " << valid_count << " for validation" << std::endl;

  const int64_t K = settings.components;
  auto encoder = (0.1 * torch::randn({kPixels, K})).requires_grad_();
  auto basis = (0.1 * torch::randn({K, kPixels})).requires_grad_();

  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    const auto& x = batch[0];
    auto codes = x.mm(encoder);
    auto err = (x - codes.mm(basis)).square().mean();
    return {err + 0.1 * codes.abs().mean() + 0.01 * basis.square().mean(),
            {{"err", err},
             {"|u|<0.1", (codes.abs() < 0.1).to(torch::kFloat).mean()},
             {"|v|<0.1", (basis.abs() < 0.1).to(torch::kFloat).mean()}}};
  };

  auto options = downhill::Options()
                     .algo("sgd")
                     .learning_rate(settings.learning_rate)
                     .momentum(0.9)
                     .batch_size(16)
                     .validate_every(5)
                     .patience(5)
                     .min_improvement(0.001);
  if (settings.passes) options.max_updates(*settings.passes);
  if (!settings.history.empty()) options.history(settings.history);

  const auto validation_loss = [&] {
    torch::NoGradGuard no_grad;
    return loss({valid_images}).loss.item<double>();
  };
  const double initial_validation_loss = validation_loss();
  downhill::minimize(loss, {{"encoder", encoder}, {"basis", basis}}, train_images, valid_images,
                     options);

  // The loop has restored the parameters of the best validation; report them.
  torch::NoGradGuard no_grad;
  for (const auto& [name, data] :
       {std::pair{"training", train_images}, {"validation", valid_images}}) {
    const auto evaluation = loss({data});
    std::cout << name << ": loss=" << evaluation.loss.item<double>();
    for (const auto& [monitor, value] : evaluation.monitors) {
      std::cout << " " << monitor << "=" << value.item<double>();
    }
    std::cout << "\n";
  }

  write_pgm(basis, settings.output);
  std::cout << "wrote " << K << " basis images to " << settings.output << "\n";

  // Training should at least halve the validation loss (about 0.32 at the start; 0.07
  // after the validation at pass 5, 0.02 when early stopping ends the run). The loop
  // keeps the best validated parameters, the final ones included when max_updates ends it.
  const double final_validation_loss = validation_loss();
  if (!(final_validation_loss < initial_validation_loss / 2)) {  // a NaN fails too
    std::cerr << "digits_factorization: the validation loss fell only from "
              << initial_validation_loss << " to " << final_validation_loss << ", not 2-fold\n";
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "digits_factorization: " << e.what() << "\n";
  return 1;
}
