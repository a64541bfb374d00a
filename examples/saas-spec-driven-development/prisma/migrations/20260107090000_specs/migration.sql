-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "specs";

-- CreateEnum
CREATE TYPE "specs"."SpecStatus" AS ENUM ('DRAFT', 'REVIEW', 'APPROVED', 'IMPLEMENTED');

-- CreateTable
CREATE TABLE "specs"."requirements" (
    "id" UUID NOT NULL,
    "organization_id" UUID NOT NULL,
    "key" VARCHAR(32) NOT NULL,
    "title" TEXT NOT NULL,
    "body" TEXT NOT NULL,
    "priority" INTEGER NOT NULL DEFAULT 3,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "requirements_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "specs"."specifications" (
    "id" UUID NOT NULL,
    "requirement_id" UUID NOT NULL,
    "agent_id" UUID,
    "title" TEXT NOT NULL,
    "status" "specs"."SpecStatus" NOT NULL DEFAULT 'DRAFT',
    "content" JSONB NOT NULL,
    "version" INTEGER NOT NULL DEFAULT 1,
    "updated_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "specifications_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "specs"."dev_artifacts" (
    "id" UUID NOT NULL,
    "specification_id" UUID NOT NULL,
    "kind" VARCHAR(32) NOT NULL,
    "uri" TEXT NOT NULL,
    "checksum" CHAR(64),
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "dev_artifacts_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "requirements_organization_id_key_key" ON "specs"."requirements"("organization_id", "key");

-- CreateIndex
CREATE INDEX "specifications_agent_id_idx" ON "specs"."specifications"("agent_id");

-- AddForeignKey
ALTER TABLE "specs"."requirements" ADD CONSTRAINT "requirements_organization_id_fkey" FOREIGN KEY ("organization_id") REFERENCES "ecosystem"."organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "specs"."specifications" ADD CONSTRAINT "specifications_requirement_id_fkey" FOREIGN KEY ("requirement_id") REFERENCES "specs"."requirements"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "specs"."specifications" ADD CONSTRAINT "specifications_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "ecosystem"."agents"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "specs"."dev_artifacts" ADD CONSTRAINT "dev_artifacts_specification_id_fkey" FOREIGN KEY ("specification_id") REFERENCES "specs"."specifications"("id") ON DELETE CASCADE ON UPDATE CASCADE;
