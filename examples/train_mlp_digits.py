"""Train a 64-128-10 MLP built from fastlinear.Linear on scikit-learn's digits.

The network is two fastlinear.Linear layers with a ReLU between them, trained
with softmax cross-entropy and Adam (a few lines of NumPy below).  The same
split, standardised the same way, also trains scikit-learn's MLPClassifier of
the same size for comparison.  The digits data ship with scikit-learn: nothing
is downloaded.

    python examples/train_mlp_digits.py --epochs 30 --seed 0

Needs scikit-learn: ``pip install fastlinear[examples]``.
"""
import argparse
import time
import warnings

import numpy as np

import fastlinear

try:
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit("this example needs scikit-learn: pip install fastlinear[examples]") from exc

HIDDEN = 128
BATCH = 32
LEARNING_RATE = 1e-3


class Adam:
    """Adam over (parameter, gradient) pairs, updated in place without temporaries."""

    def __init__(self, pairs, lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8):
        self.pairs, self.lr, self.betas, self.eps, self.t = pairs, lr, betas, eps, 0
        self.m = [np.zeros_like(p) for p, _ in pairs]
        self.v = [np.zeros_like(p) for p, _ in pairs]
        self.tmp = [np.empty_like(p) for p, _ in pairs]

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        step = self.lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for (p, g), m, v, tmp in zip(self.pairs, self.m, self.v, self.tmp):
            m *= b1                                    # m = b1 m + (1 - b1) g
            m += np.multiply(g, 1 - b1, out=tmp)
            v *= b2                                    # v = b2 v + (1 - b2) g^2
            v += np.multiply(np.square(g, out=tmp), 1 - b2, out=tmp)
            np.sqrt(v, out=tmp)                        # p -= step m / (sqrt(v) + eps)
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= step
            p -= tmp


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy loss, and its gradient written over ``logits``."""
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)        # now the probabilities
    rows = np.arange(len(labels))
    loss = -np.log(logits[rows, labels]).mean()
    logits[rows, labels] -= 1
    logits /= len(labels)
    return loss, logits


def load_data(seed):
    """Standardised train/test split of the digits (75/25, stratified)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def train_fastlinear(X_train, y_train, epochs, seed, quiet=False):
    """Train the MLP; return (predict function, loss per epoch)."""
    fc1 = fastlinear.Linear(X_train.shape[1], HIDDEN, seed=seed)
    fc2 = fastlinear.Linear(HIDDEN, 10, seed=seed + 1)
    layers = (fc1, fc2)
    optimiser = Adam(fc1.parameters() + fc2.parameters())
    rng = np.random.default_rng(seed)
    losses = []
    for epoch in range(epochs):
        order = rng.permutation(len(X_train))
        total = 0.0
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            h = fc1.forward(X_train[batch])
            np.maximum(h, 0, out=h)                     # ReLU
            loss, dlogits = softmax_cross_entropy(fc2.forward(h), y_train[batch])
            for layer in layers:
                layer.zero_grad()
            dh = fc2.backward(dlogits)                  # adds into fc2.dW, fc2.db
            dh[h <= 0] = 0                              # through the ReLU
            fc1.backward(dh, need_dx=False)             # adds into fc1.dW, fc1.db
            optimiser.step()
            total += loss * len(batch)
        losses.append(total / len(X_train))
        if not quiet:
            print(f"epoch {epoch + 1:3d}  loss {losses[-1]:.4f}")

    def predict(X):
        h = fastlinear.linear_forward(X, fc1.W, fc1.b)
        return fastlinear.linear_forward(np.maximum(h, 0, out=h), fc2.W, fc2.b).argmax(axis=1)

    return predict, losses


def main(epochs=30, seed=0, quiet=False):
    """Train both models on the same split; return their test accuracies and losses.

    Returns a dict with ``fastlinear_accuracy``, ``sklearn_accuracy`` (fractions
    of the test set), ``losses`` (the fastlinear MLP's mean training loss per
    epoch) and ``seconds`` (training time of each model).
    """
    X_train, X_test, y_train, y_test = load_data(seed)
    start = time.perf_counter()
    predict, losses = train_fastlinear(X_train, y_train, epochs, seed, quiet)
    fl_seconds = time.perf_counter() - start
    fl_accuracy = float((predict(X_test) == y_test).mean())

    start = time.perf_counter()
    reference = MLPClassifier(hidden_layer_sizes=(HIDDEN,), solver="adam",
                              learning_rate_init=LEARNING_RATE, batch_size=BATCH,
                              max_iter=max(epochs, 1), n_iter_no_change=max(epochs, 1),
                              random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the budget
        reference.fit(X_train, y_train)
    sk_seconds = time.perf_counter() - start
    sk_accuracy = float(reference.score(X_test, y_test))

    if not quiet:
        print(f"test accuracy: fastlinear MLP {fl_accuracy:.2%} ({fl_seconds:.2f} s), "
              f"MLPClassifier {sk_accuracy:.2%} ({sk_seconds:.2f} s), "
              f"difference {100 * (fl_accuracy - sk_accuracy):+.2f} points")
    return {"fastlinear_accuracy": fl_accuracy, "sklearn_accuracy": sk_accuracy,
            "losses": losses, "seconds": {"fastlinear": fl_seconds, "sklearn": sk_seconds}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of split, init and shuffling")
    args = parser.parse_args()
    main(epochs=args.epochs, seed=args.seed)
