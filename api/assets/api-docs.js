// Starts Swagger UI on /api-docs over this server's OpenAPI document. A file, not an inline
// script, so that a Content-Security-Policy without 'unsafe-inline' can allow it.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The default validator badge calls an online service: nothing leaves this server.
    validatorUrl: null,
  });
});
