"""The model and the data preparation, checked without training."""

import keras
import numpy
import pytest

import mnist_large_cnn as cnn

# (layer type, output shape without the batch axis, parameters)
EXPECTED_LAYERS = [
    ("Conv2D", (30, 24, 24), 780),
    ("MaxPooling2D", (30, 12, 12), 0),
    ("Conv2D", (15, 10, 10), 4065),
    ("MaxPooling2D", (15, 5, 5), 0),
    ("Dropout", (15, 5, 5), 0),
    ("Flatten", (375,), 0),
    ("Dense", (128,), 48128),
    ("Dense", (50,), 6450),
    ("Dense", (10,), 510),
]


@pytest.fixture(scope="module")
def model():
    cnn.setup(cnn.SEED)
    return cnn.larger_model(10)


def test_layers_come_in_the_2017_order_with_the_2017_shapes(model):
    found = [
        (type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params())
        for layer in model.layers
    ]
    assert found == EXPECTED_LAYERS


def test_the_model_has_59933_trainable_parameters(model):
    trainable = sum(int(numpy.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 59933
    assert model.count_params() == 59933


def test_the_model_reads_channels_first_images(model):
    assert keras.config.image_data_format() == "channels_first"
    assert tuple(model.input_shape) == (None, 1, 28, 28)
    for layer in model.layers:
        if hasattr(layer, "data_format"):
            assert layer.data_format == "channels_first", layer.name


def test_layer_settings_match_the_2017_script(model):
    conv1, pool1, conv2, pool2, dropout, _, dense1, dense2, dense3 = model.layers
    assert (conv1.filters, conv1.kernel_size) == (30, (5, 5))
    assert (conv2.filters, conv2.kernel_size) == (15, (3, 3))
    assert pool1.pool_size == pool2.pool_size == (2, 2)
    assert dropout.rate == 0.2
    assert [d.units for d in (dense1, dense2, dense3)] == [128, 50, 10]
    hidden = (conv1, conv2, dense1, dense2)
    assert all(layer.activation.__name__ == "relu" for layer in hidden)
    assert dense3.activation.__name__ == "softmax"


def test_compile_settings_match_the_2017_script(model):
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    # Keras defaults, as in 2017.
    assert model.optimizer.learning_rate.numpy() == pytest.approx(0.001)
    assert model.loss == "categorical_crossentropy"
    metric_names = [m.name for m in model.metrics]
    assert "loss" in metric_names and "compile_metrics" in metric_names


def test_predictions_are_probabilities_over_ten_digits(model):
    images = numpy.random.default_rng(0).random((4, 1, 28, 28), dtype="float32")
    probabilities = model.predict(images, verbose=0)
    # Softmax: ten non-negative numbers per image that add up to one.
    assert probabilities.shape == (4, 10)
    assert (probabilities >= 0).all()
    numpy.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def test_the_same_seed_gives_the_same_initial_weights():
    cnn.setup(7)
    first = [w.numpy() for w in cnn.larger_model(10).weights]
    cnn.setup(7)
    second = [w.numpy() for w in cnn.larger_model(10).weights]
    cnn.setup(8)
    other = [w.numpy() for w in cnn.larger_model(10).weights]
    assert all(numpy.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not numpy.array_equal(first[0], other[0])


def test_prepare_data_shapes_scales_and_one_hot_encodes():
    cnn.setup(cnn.SEED)
    images = numpy.zeros((3, 28, 28), numpy.uint8)
    images[0, 0, 0], images[1, 5, 7] = 255, 51
    labels = numpy.array([5, 0, 9], numpy.uint8)
    X_train, y_train, X_test, y_test, num_classes = cnn.prepare_data(
        images, labels, images[:2], labels[:2]
    )
    assert X_train.shape == (3, 1, 28, 28) and X_test.shape == (2, 1, 28, 28)
    assert X_train.dtype == numpy.float32
    assert X_train.min() == 0 and X_train.max() == 1
    assert X_train[1, 0, 5, 7] == pytest.approx(0.2)
    # The label 5 becomes a row with a single 1 in column 5.
    assert num_classes == 10
    assert y_train.shape == (3, 10) and y_test.shape == (2, 10)
    numpy.testing.assert_array_equal(y_train.argmax(axis=1), labels)
    numpy.testing.assert_array_equal(y_train.sum(axis=1), 1)
