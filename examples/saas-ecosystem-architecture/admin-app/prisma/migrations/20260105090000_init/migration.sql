-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "ecosystem";

-- CreateEnum
CREATE TYPE "ecosystem"."AgentStatus" AS ENUM ('ACTIVE', 'PAUSED', 'RETIRED');

-- CreateTable
CREATE TABLE "ecosystem"."organizations" (
    "id" UUID NOT NULL,
    "slug" VARCHAR(64) NOT NULL,
    "name" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "organizations_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ecosystem"."agents" (
    "id" UUID NOT NULL,
    "organization_id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "status" "ecosystem"."AgentStatus" NOT NULL DEFAULT 'ACTIVE',
    "config" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "agents_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ecosystem"."agent_memories" (
    "id" BIGSERIAL NOT NULL,
    "agent_id" UUID NOT NULL,
    "kind" VARCHAR(32) NOT NULL,
    "content" TEXT NOT NULL,
    "metadata" JSONB,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "agent_memories_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "organizations_slug_key" ON "ecosystem"."organizations"("slug");

-- CreateIndex
CREATE INDEX "agents_status_idx" ON "ecosystem"."agents"("status");

-- CreateIndex
CREATE UNIQUE INDEX "agents_organization_id_name_key" ON "ecosystem"."agents"("organization_id", "name");

-- CreateIndex
CREATE INDEX "agent_memories_agent_id_created_at_idx" ON "ecosystem"."agent_memories"("agent_id", "created_at" DESC);

-- AddForeignKey
ALTER TABLE "ecosystem"."agents" ADD CONSTRAINT "agents_organization_id_fkey" FOREIGN KEY ("organization_id") REFERENCES "ecosystem"."organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ecosystem"."agent_memories" ADD CONSTRAINT "agent_memories_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "ecosystem"."agents"("id") ON DELETE CASCADE ON UPDATE CASCADE;
