"""A pairwise vision-model judge: which of two outputs of the same challenge better follows the request
(and, for edits, better keeps what the instruction says to keep), asked of a chat model that takes images."""
