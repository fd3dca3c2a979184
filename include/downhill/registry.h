#pragma once
// Making optimizers by name, and registering new algorithms.

#include <downhill/batch.h>
#include <downhill/optimizer.h>
#include <downhill/options.h>
#include <downhill/params.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace downhill {

/// Makes an optimizer of algorithm `algo` (any case: "sgd", "NAG", "RmsProp",
/// "adadelta", "EsGd", "adam", "rprop", "adagrad", or a registered name) that
/// minimizes `loss` over `params`. Throws std::invalid_argument listing the known
/// names for an unknown one, and for invalid options or parameters.
std::unique_ptr<Optimizer> build(std::string_view algo, Loss loss, Params params,
                                 Options options = {});
/// An optimizer without a loss, used only through apply().
std::unique_ptr<Optimizer> build(std::string_view algo, Params params, Options options = {});

/// Makes an optimizer; `loss` is empty for an apply()-only optimizer.
using Factory =
    std::function<std::unique_ptr<Optimizer>(Loss loss, Params params, Options options)>;

/// Registers `factory` under `name` (case-insensitive) so that build() finds it.
/// Throws std::invalid_argument if the name is empty or already taken.
void register_algorithm(std::string_view name, Factory factory);

/// The registered names, lower case, sorted (the built-in ones and any registered).
std::vector<std::string> algorithm_names();

/// The eight built-in algorithms' names, lower case, in the order the guide lists them:
/// sgd, nag, rprop, rmsprop, adagrad, adadelta, esgd, adam.
std::vector<std::string> builtin_algorithm_names();

}  // namespace downhill
