// pfdata.h: the subcommands of `pfdata`, each a main() over its own arguments
// (argv[0] is the subcommand name). They return a PF_EXIT_* code.
#ifndef PF_PFDATA_H
#define PF_PFDATA_H

int pfdata_text_main(int argc, char **argv);    // datasets/text_cmd.c
int pfdata_images_main(int argc, char **argv);  // datasets/images_cmd.c

#endif
