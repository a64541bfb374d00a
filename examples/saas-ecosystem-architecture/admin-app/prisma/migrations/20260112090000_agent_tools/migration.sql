-- CreateTable
CREATE TABLE "ecosystem"."agent_tools" (
    "id" UUID NOT NULL,
    "agent_id" UUID NOT NULL,
    "name" VARCHAR(128) NOT NULL,
    "version" VARCHAR(32) NOT NULL DEFAULT '1.0.0',
    "schema" JSONB NOT NULL,
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "agent_tools_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "agent_tools_agent_id_name_key" ON "ecosystem"."agent_tools"("agent_id", "name");

-- AddForeignKey
ALTER TABLE "ecosystem"."agent_tools" ADD CONSTRAINT "agent_tools_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "ecosystem"."agents"("id") ON DELETE CASCADE ON UPDATE CASCADE;
