#include "uploader/progress.h"
