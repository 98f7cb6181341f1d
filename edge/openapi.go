package edge

import (
	_ "embed"

	"github.com/gofiber/fiber/v2"
)

// openAPIDocument is the OpenAPI 3.1 description of every route in
// routes(); TestOpenAPIMatchesRoutes keeps the two in step, including who
// may call each operation (x-roles).
//
//go:embed openapi.json
var openAPIDocument []byte

func (s *Server) openapi(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(openAPIDocument)
}
