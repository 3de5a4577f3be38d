"""CIFAR-10's fixed facts, in one place: class names, sizes, archive, normalisation."""

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
NUM_CLASSES = len(CLASSES)
IMAGE_SHAPE = (32, 32, 3)  # H, W, C as stored (NHWC uint8)
TRAIN_SIZE, TEST_SIZE = 50_000, 10_000

# Per-channel mean and std of the official training images, pixels scaled to [0, 1]; the values
# torchvision's CIFAR-10 examples use. The report states no constants (docs/report.md), so we
# take these and write them down. (The JPEG q75 copy has the same means, stds 0.002-0.005 lower.)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

# The official python archive and its checksum, from the CIFAR-10 home page.
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"

# The two official folder layouts and their files.
PY_FOLDER = "cifar-10-batches-py"
BIN_FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
PIXELS = 32 * 32 * 3
