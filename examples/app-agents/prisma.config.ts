// Prisma configuration of app-agents. The shared models are owned and migrated by
// saas-ecosystem-architecture: declaring them external keeps this repo's migrations from creating or
// altering them. Kept in step with workspace.yaml's shared_models by `ws schema sync`.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "shared/database/schema.prisma",
  migrations: { path: "shared/database/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "" },
  experimental: { externalTables: true },
  tables: {
    external: [
      "ecosystem.organizations",
      "ecosystem.agents",
      "ecosystem.agent_memories",
      "ecosystem.agent_tools",
    ],
  },
  enums: {
    external: ["ecosystem.AgentStatus"],
  },
});
