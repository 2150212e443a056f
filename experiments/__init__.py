"""The experiments, one file each, and the registry that `run.py` reads.

Adding one: write `experiments/NAME.py` with PAPER, get_config(scale) and run(config, workdir)
(see DESIGN.md), add it below, and add a smoke test in tests/experiments/.
"""

from types import ModuleType

from experiments import (
    activation_maximization,
    adding_problem,
    attention_vs_length,
    beam_search,
    bptt_gradients,
    ciresan_mlp,
    copy_memory,
    cyclegan_digits,
    dcgan_mnist,
    deep_linear_orthogonal,
    digits_linear,
    digits_mlp,
    ensembles,
    gan_mixtures,
    glorot_init,
    gradient_variance,
    hard_attention,
    hyperparameter_search,
    iwae_mnist,
    language_model,
    lenet_mnist,
    lstm_variants,
    mnist_mlp,
    multi30k_translation,
    optimizers_digits,
    optimizers_rosenbrock,
    perceptron,
    regularization,
    reinforce_cartpole,
    segmentation,
    source_reversal,
    sparse_attention,
    sparsemax_multilabel,
    transfer_learning,
    translation_invariance,
    universal_approximation,
    vae_mnist,
    vanishing_gradients,
)

EXPERIMENTS: dict[str, ModuleType] = {
    # Issue 2: linear models and MLPs.
    "perceptron": perceptron,
    "digits_linear": digits_linear,
    "digits_mlp": digits_mlp,
    "mnist_mlp": mnist_mlp,
    # Issue 3: building blocks and the science of training.
    "optimizers_rosenbrock": optimizers_rosenbrock,
    "optimizers_digits": optimizers_digits,
    "glorot_init": glorot_init,
    "vanishing_gradients": vanishing_gradients,
    "regularization": regularization,
    "universal_approximation": universal_approximation,
    "deep_linear_orthogonal": deep_linear_orthogonal,
    "hyperparameter_search": hyperparameter_search,
    "ensembles": ensembles,
    "sparsemax_multilabel": sparsemax_multilabel,
    # Issue 7: convolutional networks.
    "lenet_mnist": lenet_mnist,
    "translation_invariance": translation_invariance,
    "transfer_learning": transfer_learning,
    "activation_maximization": activation_maximization,
    "ciresan_mlp": ciresan_mlp,
    "segmentation": segmentation,
    # Issue 8: recurrent networks.
    "bptt_gradients": bptt_gradients,
    "adding_problem": adding_problem,
    "copy_memory": copy_memory,
    "lstm_variants": lstm_variants,
    "language_model": language_model,
    # Issue 9: sequence to sequence with attention.
    "multi30k_translation": multi30k_translation,
    "attention_vs_length": attention_vs_length,
    "source_reversal": source_reversal,
    "beam_search": beam_search,
    "sparse_attention": sparse_attention,
    # Issue 10: generative models.
    "vae_mnist": vae_mnist,
    "iwae_mnist": iwae_mnist,
    "gan_mixtures": gan_mixtures,
    "dcgan_mnist": dcgan_mnist,
    "cyclegan_digits": cyclegan_digits,
    # Issue 11: score-function gradients.
    "gradient_variance": gradient_variance,
    "reinforce_cartpole": reinforce_cartpole,
    "hard_attention": hard_attention,
}
