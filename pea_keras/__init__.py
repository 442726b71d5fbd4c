"""Progressive Ensemble Activations for Keras (arXiv 2207.14074).

Train with `alpha * ReLU(x) + (1 - alpha) * g(x)` in place of every ReLU while a schedule
moves alpha from 0 to 1, then deploy the plain ReLU network:

    model = pea_keras.wrap(model, activation="silu")
    model.fit(data, epochs=E, callbacks=[pea_keras.PEAScheduler()])
    relu_model = pea_keras.strip(model)
"""
from pea_keras import activations, flavor, schedules
from pea_keras.callbacks import PEAScheduler
from pea_keras.layer import PEALayer, TFKerasPEALayer
from pea_keras.surgery import pea_layers, strip, wrap

__version__ = "0.1.0"
__all__ = ["wrap", "strip", "pea_layers", "PEALayer", "TFKerasPEALayer", "PEAScheduler",
           "activations", "schedules", "flavor"]
