// Command sympozium-controller reconciles sympozium.ai AgentRuns into Jobs.
package main

import (
	"fmt"
)

var version = "dev"

func main() {
	fmt.Println("sympozium-controller", version)
}
