// Command hello is the stand-in binary of the image builder's tests: small,
// so that building it twice for two architectures stays fast. It prints its
// uid, so a test can run it from the extracted image.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("hello from an image, uid %d\n", os.Getuid())
}
