"""The CIFAR-100 label hierarchy: 100 fine classes grouped into 20 superclasses of 5.

Written from the superclass list published with the dataset (https://www.cs.toronto.edu/~kriz/cifar.html). Label
indices follow the dataset's ``meta`` file, where both the fine and the coarse label names are in alphabetical
order; torchvision's ``CIFAR100`` returns the fine index as its target.

Example::

    >>> coarse = torch.tensor(CIFAR100_COARSE)[fine_targets]  # for otalign.targets.hierarchical
"""

from __future__ import annotations

#: Superclass name -> its five fine class names (the dataset's own spelling of the label names).
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}

#: Coarse label names in index order (alphabetical, as in the dataset's ``meta`` file).
CIFAR100_COARSE_NAMES: tuple[str, ...] = tuple(sorted(CIFAR100_SUPERCLASSES))

#: Fine label names in index order (alphabetical, as ``CIFAR100(...).classes``).
CIFAR100_FINE_NAMES: tuple[str, ...] = tuple(sorted(n for names in CIFAR100_SUPERCLASSES.values() for n in names))

_COARSE_OF_NAME = {fine: coarse for coarse, names in CIFAR100_SUPERCLASSES.items() for fine in names}

#: ``CIFAR100_COARSE[fine_index]`` is the coarse (superclass) index of that fine class; 100 entries.
CIFAR100_COARSE: tuple[int, ...] = tuple(CIFAR100_COARSE_NAMES.index(_COARSE_OF_NAME[n]) for n in CIFAR100_FINE_NAMES)

__all__ = ["CIFAR100_COARSE", "CIFAR100_COARSE_NAMES", "CIFAR100_FINE_NAMES", "CIFAR100_SUPERCLASSES"]
