"""Data sets bundled with cnndsl, read by :mod:`cnndsl.train.data`.

``digits.npz``: ``images`` uint8 (1797, 8, 8), values 0..16 (the number of set pixels in each
4x4 block of a 32x32 bitmap), and ``target`` uint8 (1797,), labels 0..9. Made with
``sklearn.datasets.load_digits()`` (scikit-learn 1.9.1) and ``np.savez_compressed``.

Source and licence: E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits",
UCI Machine Learning Repository, 1998, doi:10.24432/C50P49, CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/). cnndsl ships the test part of that data set
as scikit-learn does, unchanged except for the file format.
"""
