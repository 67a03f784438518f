-- The auction sample schema. Idempotent: applying it again changes nothing that exists.
-- Triggers, publications and replica identities belong to the connector tooling, not here.

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'public' AND t.typname = 'item_status'
    ) THEN
        CREATE TYPE public.item_status AS ENUM ('draft', 'listed', 'sold', 'withdrawn');
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS public.users (
    id           bigint PRIMARY KEY,
    email        text NOT NULL UNIQUE,
    display_name text,
    is_active    boolean NOT NULL DEFAULT true,
    rating       numeric(3, 2),
    created_at   timestamptz NOT NULL DEFAULT now(),
    birth_date   date,
    external_id  uuid NOT NULL,
    tags         text[],
    profile      jsonb
);

CREATE TABLE IF NOT EXISTS public.items (
    id             bigint PRIMARY KEY,
    seller_id      bigint REFERENCES public.users (id),
    title          text NOT NULL,
    description    text,
    status         public.item_status,
    reserve_price  numeric(12, 2),
    starting_price numeric,
    ends_at        timestamptz,
    attributes     jsonb,
    thumbnail      bytea,
    created_at     timestamptz DEFAULT now()
);

-- EXTERNAL keeps long descriptions uncompressed, so every one that pushes its row past the TOAST
-- threshold (about 2 kB) is stored out of line whatever its compressibility. Updates that leave
-- such a value untouched then reach logical decoding without it, which consumers must handle.
ALTER TABLE public.items ALTER COLUMN description SET STORAGE EXTERNAL;

-- The key is declared in a different order from the columns: consumers must follow the
-- constraint's order (item_id, bid_no), not the table's.
CREATE TABLE IF NOT EXISTS public.bids (
    bid_no    integer NOT NULL,
    item_id   bigint NOT NULL REFERENCES public.items (id),
    bidder_id bigint REFERENCES public.users (id),
    amount    numeric(12, 2) NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now(),
    is_proxy  boolean,
    PRIMARY KEY (item_id, bid_no)
);

CREATE INDEX IF NOT EXISTS items_seller_id_idx ON public.items (seller_id);
CREATE INDEX IF NOT EXISTS bids_bidder_id_idx ON public.bids (bidder_id);
