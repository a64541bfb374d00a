-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "agents";

-- CreateEnum
CREATE TYPE "agents"."RunStatus" AS ENUM ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED');

-- CreateTable
CREATE TABLE "agents"."agent_runs" (
    "id" BIGSERIAL NOT NULL,
    "agent_id" UUID NOT NULL,
    "status" "agents"."RunStatus" NOT NULL DEFAULT 'QUEUED',
    "input" JSONB NOT NULL,
    "output" JSONB,
    "tokens_used" INTEGER NOT NULL DEFAULT 0,
    "cost_usd" DECIMAL(12,6) NOT NULL DEFAULT 0,
    "started_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMP(3),

    CONSTRAINT "agent_runs_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "agents"."tool_invocations" (
    "id" BIGSERIAL NOT NULL,
    "run_id" BIGINT NOT NULL,
    "tool_id" UUID NOT NULL,
    "arguments" JSONB NOT NULL,
    "result" JSONB,
    "duration_ms" INTEGER NOT NULL,
    "error" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "tool_invocations_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "agents"."memories" (
    "agent_id" TEXT NOT NULL,
    "source_rowid" BIGINT NOT NULL,
    "kind" TEXT NOT NULL,
    "content" TEXT NOT NULL,
    "embedding" BYTEA,
    "metadata" JSONB,
    "created_at" TIMESTAMPTZ(6) NOT NULL,

    CONSTRAINT "memories_pkey" PRIMARY KEY ("agent_id","source_rowid")
);

-- CreateTable
CREATE TABLE "agents"."conversations" (
    "agent_id" TEXT NOT NULL,
    "source_rowid" BIGINT NOT NULL,
    "session_id" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "message" TEXT NOT NULL,
    "tokens" INTEGER,
    "created_at" TIMESTAMPTZ(6) NOT NULL,

    CONSTRAINT "conversations_pkey" PRIMARY KEY ("agent_id","source_rowid")
);

-- CreateIndex
CREATE INDEX "agent_runs_agent_id_started_at_idx" ON "agents"."agent_runs"("agent_id", "started_at");

-- CreateIndex
CREATE INDEX "tool_invocations_run_id_idx" ON "agents"."tool_invocations"("run_id");

-- CreateIndex
CREATE INDEX "conversations_agent_id_session_id_idx" ON "agents"."conversations"("agent_id", "session_id");

-- AddForeignKey
ALTER TABLE "agents"."agent_runs" ADD CONSTRAINT "agent_runs_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "ecosystem"."agents"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "agents"."tool_invocations" ADD CONSTRAINT "tool_invocations_run_id_fkey" FOREIGN KEY ("run_id") REFERENCES "agents"."agent_runs"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "agents"."tool_invocations" ADD CONSTRAINT "tool_invocations_tool_id_fkey" FOREIGN KEY ("tool_id") REFERENCES "ecosystem"."agent_tools"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
