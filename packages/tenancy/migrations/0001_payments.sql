CREATE TABLE "payments" (
	"id" text PRIMARY KEY NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"request_id" text NOT NULL,
	"usage_id" text,
	"payer" text NOT NULL,
	"network" text NOT NULL,
	"asset" text NOT NULL,
	"pay_to" text NOT NULL,
	"amount" numeric(78, 0) NOT NULL,
	"scheme" text NOT NULL,
	"x402_version" integer NOT NULL,
	"nonce" text NOT NULL,
	"status" text NOT NULL,
	"transaction" text,
	"error" text
);
--> statement-breakpoint
CREATE INDEX "payments_at_idx" ON "payments" USING btree ("at");--> statement-breakpoint
CREATE INDEX "payments_payer_at_idx" ON "payments" USING btree ("payer","at");