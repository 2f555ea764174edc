a = "\u00fc\n"
/* c */
# d
