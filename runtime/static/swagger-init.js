// Swagger UI for /docs, from the package (no CDN). URLs are relative to the page, so a path prefix (an API
// Gateway stage) works. An API key typed into "Authorize" stays in this page's memory.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  window.ui = window.SwaggerUIBundle({
    url: new URL("openapi.json", window.location.href).toString(),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    persistAuthorization: false,
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
  });
});
