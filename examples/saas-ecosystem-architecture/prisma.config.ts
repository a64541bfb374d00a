// Prisma configuration of saas-ecosystem-architecture, the primary: it owns and migrates the shared models.
// The connection URL comes from DATABASE_URL (Prisma 7 no longer reads it from schema.prisma).
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "admin-app/prisma/schema.prisma",
  migrations: { path: "admin-app/prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "" },
});
