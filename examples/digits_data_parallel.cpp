// digits_classifier, data-parallel: the same MLP on the 8×8 digits, trained by every process
// that torchrun starts, each on its share of every batch's samples (docs/guide.md,
// "Scaling out"):
//
//   torchrun --standalone --nproc_per_node=2 --redirects 1 --tee 1 --no_python
//       build/examples/digits_data_parallel            (one command)
//
// Every rank loads the same data and builds the same model; build() gives every rank rank 0's
// initial weights, the loop gives each rank every second batch (of 16 samples: 32 per
// update, as digits_classifier's batches), averages the gradients, and agrees on validation
// and early stopping, so that every rank ends with the same parameters. Rank 0 prints the
// result. Started without torchrun, it trains alone.
//
// Usage: digits_data_parallel [--epochs N] [--data PATH]
#include <downhill/distributed.h>
#include <downhill/downhill.h>
#include <torch/torch.h>

#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <stdexcept>
#include <string>

#include "digits_data.h"

int main(int argc, char** argv) try {
  int64_t epochs = 30;
  std::string path = digits::kDefaultPath;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--epochs") {
      epochs = std::stoll(argv[i + 1]);
    } else if (flag == "--data") {
      path = argv[i + 1];
    } else {
      throw std::invalid_argument("unknown option " + flag + "; usage: " + argv[0] +
                                  " [--epochs N] [--data PATH]");
    }
  }
  // torchrun sets WORLD_SIZE in every process it starts.
  const bool under_torchrun = std::getenv("WORLD_SIZE") != nullptr;

  torch::manual_seed(0);  // the same held-out fifth on every rank
  const auto images = digits::load(path);
  const auto [x_train, y_train, x_valid, y_valid] = digits::hold_out_fifth(images);

  auto model = std::make_shared<digits::Mlp>();
  auto loss = [&](const downhill::Batch& batch) {
    return digits::classification_loss(*model, batch);
  };
  auto opt = downhill::build("adam", loss, model->named_parameters(),
                             downhill::Options()
                                 .learning_rate(1e-3)
                                 .validate_every(1)
                                 .patience(5)
                                 .max_updates(epochs)
                                 .distributed(under_torchrun));
  const auto place = opt->place();

  // batch_size is per rank: with 2 ranks, 16 each make digits_classifier's 32 per update.
  downhill::Dataset train({x_train, y_train}, downhill::DatasetOptions()
                                                  .name("train")
                                                  .batch_size(32 / place.world_size)
                                                  .shuffle_samples(true));
  downhill::Dataset valid({x_valid, y_valid},
                          downhill::DatasetOptions().name("valid").batch_size(60).shuffle(false));
  opt->minimize(train, &valid);

  // The loop restored the best validation's parameters, the same on every rank.
  const auto summary = opt->last_run();
  const double accuracy = summary.best.at("acc");
  if (place.rank == 0) {
    std::cout << std::fixed << std::setprecision(4) << "rank 0 of " << place.world_size
              << ": best validation accuracy " << accuracy << " after pass " << summary.best_pass
              << " of " << summary.passes << " (" << x_train.size(0) << " training images)\n";
  }
  if (!(accuracy > 0.9)) {
    std::cerr << "digits_data_parallel: rank " << place.rank << ": validation accuracy " << accuracy
              << " is below 0.9\n";
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "digits_data_parallel: " << e.what() << "\n";
  return 1;
}
