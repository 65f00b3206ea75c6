// The benchmark's peer: a GraphQL gateway over the same simulated plant, written the way a
// team would write it without ordergraph — graphql-yoga, one DataLoader per source look-up
// per request, fetch() to the five source APIs (sources/API.md), no cross-request cache
// (it has no way to know when source data changes). It serves the subset of ordergraph's
// schema the benchmark queries, with simple versions of the derived fields.
//
//   PLANT_URL=http://127.0.0.1:8100 PORT=4000 node server.js
//
// RESPONSE_CACHE_TTL_MS=60000 adds what a team would add next: @graphql-yoga/plugin-response-cache,
// one in-memory cache shared by every viewer (the bench has no sessions), entries kept for
// the TTL. It cannot know when source data changes, so it may answer from an entry up to
// the TTL old.

import { createServer } from 'node:http';
import DataLoader from 'dataloader';
import { GraphQLError } from 'graphql';
import { createSchema, createYoga } from 'graphql-yoga';
import { useResponseCache } from '@graphql-yoga/plugin-response-cache';

const PLANT = (process.env.PLANT_URL || 'http://127.0.0.1:8100').replace(/\/$/, '');
const PORT = Number(process.env.PORT || 4000);
const HOST = process.env.HOST || '127.0.0.1';
const CACHE_TTL_MS = Number(process.env.RESPONSE_CACHE_TTL_MS || 0); // 0: no response cache
const MAX_KEYS = 500; // keys per upstream call (the plant takes up to 1,000)

// --- the source API -------------------------------------------------------------------

async function get(system, entitySet, params) {
  const url = new URL(`${PLANT}/${system}/${entitySet}`);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const res = await fetch(url);
  if (!res.ok) {
    throw new GraphQLError(`${system.toUpperCase()} ${entitySet} answered HTTP ${res.status}`, {
      extensions: { code: 'SOURCE_UNAVAILABLE', source: system },
    });
  }
  return res.json();
}

// A DataLoader whose batch is one GET with `field=k1,k2,...`; `many` groups by field.
function loader(system, entitySet, field, many) {
  return new DataLoader(
    async (keys) => {
      const { value } = await get(system, entitySet, { [field]: keys.join(',') });
      const out = new Map(keys.map((k) => [k, many ? [] : null]));
      for (const row of value) {
        if (many) out.get(row[field])?.push(row);
        else out.set(row[field], row);
      }
      return keys.map((k) => out.get(k));
    },
    { maxBatchSize: MAX_KEYS },
  );
}

function loaders() {
  return {
    salesOrder: loader('erp', 'A_SalesOrder', 'SalesOrder', false),
    customer: loader('erp', 'A_Customer', 'Customer', false),
    productionOrders: loader('mes', 'A_ProductionOrder', 'SalesOrder', true),
    workCenter: loader('mes', 'A_WorkCenter', 'WorkCenter', false),
    components: loader('wms', 'A_ComponentAvailability', 'ManufacturingOrder', true),
    deliveries: loader('wms', 'A_OutbDeliveryHeader', 'ReferenceSDDocument', true),
    lots: loader('qms', 'A_InspectionLot', 'ManufacturingOrder', true),
    shipments: loader('tms', 'Shipment', 'DeliveryDocument', true),
  };
}

const flat = (xs) => xs.flat();
const productionOrders = (ctx, so) => ctx.loaders.productionOrders.load(so.SalesOrder);
const deliveries = (ctx, so) => ctx.loaders.deliveries.load(so.SalesOrder);
async function components(ctx, so) {
  const pos = await productionOrders(ctx, so);
  return flat(await ctx.loaders.components.loadMany(pos.map((p) => p.ManufacturingOrder)));
}
async function lots(ctx, so) {
  const pos = await productionOrders(ctx, so);
  return flat(await ctx.loaders.lots.loadMany(pos.map((p) => p.ManufacturingOrder)));
}
async function shipments(ctx, so) {
  const dels = await deliveries(ctx, so);
  return flat(await ctx.loaders.shipments.loadMany(dels.map((d) => d.DeliveryDocument)));
}
async function workCenters(ctx, pos) {
  const wcs = await ctx.loaders.workCenter.loadMany([...new Set(pos.map((p) => p.WorkCenter))]);
  return new Map(wcs.filter(Boolean).map((w) => [w.WorkCenter, w]));
}

// --- simple derived statuses ------------------------------------------------------------

const PROCESSING = { A: 'NOT_STARTED', B: 'PARTIAL', C: 'COMPLETE' };
const processing = (code) => PROCESSING[code] || 'NOT_STARTED';
const DONE = new Set(['CONFIRMED', 'DELIVERED', 'TECO', 'CLOSED']);
const STARTED = new Set(['STARTED', 'PARTIALLY_CONFIRMED']);

function productionStatus(pos, wcs) {
  if (!pos.length) return 'NOT_REQUIRED';
  if (pos.some((p) => STARTED.has(p.OrderStatus) && wcs.get(p.WorkCenter)?.State === 'DOWN')) return 'INTERRUPTED';
  if (pos.every((p) => DONE.has(p.OrderStatus))) return 'COMPLETED';
  if (pos.some((p) => STARTED.has(p.OrderStatus) || DONE.has(p.OrderStatus))) return 'IN_PROGRESS';
  if (pos.some((p) => p.OrderStatus === 'RELEASED')) return 'RELEASED';
  return 'NOT_RELEASED';
}

function materialsStatus(pos, comps) {
  if (!pos.length) return 'NOT_REQUIRED';
  const waiting = new Set(pos.filter((p) => !STARTED.has(p.OrderStatus) && !DONE.has(p.OrderStatus)).map((p) => p.ManufacturingOrder));
  if (!waiting.size) return 'CONSUMED';
  return comps.some((c) => waiting.has(c.ManufacturingOrder) && c.ShortageQuantity > 0) ? 'SHORTAGE' : 'AVAILABLE';
}

function qualityStatus(pos, lotList) {
  if (!pos.length) return 'NOT_REQUIRED';
  if (!lotList.length) return 'NOT_STARTED';
  if (lotList.some((l) => l.to_UsageDecision?.UsageDecisionValuation === 'REJECTED')) return 'REJECTED';
  if (lotList.some((l) => !l.InspectionLotHasUsageDecision)) return 'IN_INSPECTION';
  return 'ACCEPTED';
}

const TAG_STATUS = { Delivered: 'DELIVERED', OutForDelivery: 'OUT_FOR_DELIVERY', AttemptFail: 'DELIVERY_FAILED', Exception: 'EXCEPTION', InTransit: 'IN_TRANSIT' };

function logisticsStatus(dels, ships) {
  if (!dels.length) return 'NOT_CREATED';
  for (const s of ships) if (TAG_STATUS[s.Tag]) return TAG_STATUS[s.Tag];
  const d = dels[0];
  if (d.OverallGoodsMovementStatus === 'C') return 'GOODS_ISSUED';
  if (d.OverallPackingStatus === 'C') return 'PACKED';
  if (d.OverallPickingStatus === 'C') return 'PICKED';
  return 'OPEN';
}

async function stage(ctx, so) {
  const [pos, dels] = await Promise.all([productionOrders(ctx, so), deliveries(ctx, so)]);
  const [comps, lotList, ships] = await Promise.all([components(ctx, so), lots(ctx, so), shipments(ctx, so)]);
  const logistics = logisticsStatus(dels, ships);
  if (['DELIVERED', 'OUT_FOR_DELIVERY', 'IN_TRANSIT', 'GOODS_ISSUED', 'PACKED', 'PICKED'].includes(logistics)) return logistics;
  if (logistics === 'OPEN') return 'READY_FOR_PICKING';
  const quality = qualityStatus(pos, lotList);
  if (quality === 'REJECTED') return 'QUALITY_REJECTED';
  if (quality === 'IN_INSPECTION') return 'IN_QUALITY_INSPECTION';
  if (pos.length && pos.every((p) => DONE.has(p.OrderStatus))) return 'READY_FOR_PICKING';
  if (pos.some((p) => STARTED.has(p.OrderStatus))) return 'IN_PRODUCTION';
  if (pos.some((p) => p.OrderStatus === 'RELEASED')) return 'PRODUCTION_RELEASED';
  if (materialsStatus(pos, comps) === 'SHORTAGE') return 'AWAITING_MATERIAL';
  return 'RECEIVED';
}

// --- schema -----------------------------------------------------------------------------

const typeDefs = /* GraphQL */ `
  enum CommercialPriority { STRATEGIC HIGH NORMAL LOW }
  enum ProcessingStatus { NOT_STARTED PARTIAL COMPLETE }
  enum OrderStage { RECEIVED AWAITING_MATERIAL PRODUCTION_RELEASED IN_PRODUCTION IN_QUALITY_INSPECTION QUALITY_REJECTED READY_FOR_PICKING PICKED PACKED GOODS_ISSUED IN_TRANSIT OUT_FOR_DELIVERY DELIVERED }
  enum ProductionStatus { NOT_REQUIRED NOT_RELEASED RELEASED IN_PROGRESS INTERRUPTED COMPLETED }
  enum MaterialsStatus { NOT_REQUIRED AVAILABLE SHORTAGE CONSUMED }
  enum QualityStatus { NOT_REQUIRED NOT_STARTED IN_INSPECTION ACCEPTED REJECTED }
  enum LogisticsStatus { NOT_CREATED OPEN PICKED PACKED GOODS_ISSUED IN_TRANSIT OUT_FOR_DELIVERY DELIVERY_FAILED DELIVERED EXCEPTION }
  enum Valuation { ACCEPTED REJECTED }

  input OrderFilter { customer: ID }

  type Query {
    order(id: ID!): Order
    orders(first: Int! = 50, after: String, filter: OrderFilter): OrderConnection!
    customer(id: ID!): Customer
  }
  type Customer {
    id: ID!
    name: String!
    country: String
    commercialPriority: CommercialPriority!
    orders(first: Int! = 50, after: String): OrderConnection!
  }
  type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }
  type OrderEdge { cursor: String! node: Order! }
  type OrderConnection { edges: [OrderEdge!]! nodes: [Order!]! pageInfo: PageInfo! totalCount: Int! }
  type Money { amount: Float! currency: String! }
  type ErpStatus {
    overallProcessStatus: ProcessingStatus!
    overallDeliveryStatus: ProcessingStatus!
    creditBlocked: Boolean!
    deliveryBlockReason: String
    lastChangedAt: String
  }
  type OrderItem {
    item: ID!
    material: String!
    quantity: Float!
    unit: String!
    netValue: Float!
    confirmedDeliveryDate: String
    confirmedQuantity: Float
  }
  type Order {
    id: ID!
    customerId: ID!
    customer: Customer
    purchaseOrderByCustomer: String
    orderDate: String!
    requestedDeliveryDate: String!
    confirmedDeliveryDate: String
    netValue: Money!
    commercialPriority: CommercialPriority!
    items: [OrderItem!]!
    erpStatus: ErpStatus!
    production: ProductionSection!
    materials: MaterialsSection!
    quality: QualitySection!
    logistics: LogisticsSection!
    stage: OrderStage!
  }
  type WorkCenter { id: ID! name: String! state: String! downSince: String expectedUpAt: String }
  type ProductionOrder {
    id: ID!
    material: String!
    salesOrderItem: String!
    status: String!
    totalQuantity: Float!
    confirmedYieldQuantity: Float!
    confirmedScrapQuantity: Float!
    unit: String!
    workCenterId: String!
    workCenter: WorkCenter
    scheduledStart: String!
    scheduledEnd: String!
    releasedAt: String
    startedAt: String
    completedAt: String
    batch: String
  }
  type ProductionSection { status: ProductionStatus! orders: [ProductionOrder!]! }
  type ComponentAvailability {
    productionOrder: String!
    material: String!
    requiredQuantity: Float!
    availableQuantity: Float!
    shortageQuantity: Float!
    unit: String!
    storageLocation: String!
    expectedReceiptDate: String
  }
  type MaterialsSection { status: MaterialsStatus! components: [ComponentAvailability!]! shortages: [ComponentAvailability!]! }
  type UsageDecision { code: String! codeGroup: String! valuation: Valuation! decidedAt: String qualityScore: Float }
  type InspectionLot {
    id: ID!
    material: String!
    batch: String!
    productionOrder: String!
    origin: String!
    createdAt: String!
    hasUsageDecision: Boolean!
    usageDecision: UsageDecision
  }
  type QualitySection { status: QualityStatus! inspectionLots: [InspectionLot!]! }
  type Shipment {
    trackingNumber: String!
    carrier: String!
    status: String!
    statusCode: String
    pickedUpAt: String
    estimatedDeliveryAt: String
    deliveredAt: String
  }
  type OutboundDelivery {
    id: ID!
    deliveryDate: String!
    shippingPoint: String!
    pickingStatus: ProcessingStatus!
    packingStatus: ProcessingStatus!
    goodsMovementStatus: ProcessingStatus!
    goodsIssuedAt: String
    billOfLading: String
    shipments: [Shipment!]!
  }
  type LogisticsSection { status: LogisticsStatus! deliveries: [OutboundDelivery!]! shipments: [Shipment!]! eta: String }
`;

const encodeCursor = (so) => Buffer.from(`order:${so}`).toString('base64url');
function decodeCursor(cursor) {
  const text = Buffer.from(cursor, 'base64url').toString();
  if (!text.startsWith('order:') || text.length === 6) {
    throw new GraphQLError(`Invalid cursor ${JSON.stringify(cursor)}`, { extensions: { code: 'BAD_USER_INPUT' } });
  }
  return text.slice(6);
}

async function listOrders(ctx, first, after, customer) {
  if (first < 0 || first > 500) throw new GraphQLError('`first` must be within 0..500', { extensions: { code: 'BAD_USER_INPUT' } });
  const params = { $top: String(first + 1) };
  if (after) params.$skiptoken = decodeCursor(after);
  if (customer) params.SoldToParty = customer;
  const page = await get('erp', 'A_SalesOrder', params);
  const picked = page.value.slice(0, first);
  for (const so of picked) ctx.loaders.salesOrder.prime(so.SalesOrder, so);
  const edges = picked.map((so) => ({ cursor: encodeCursor(so.SalesOrder), node: so }));
  return {
    edges,
    nodes: picked,
    totalCount: page.count,
    pageInfo: {
      hasNextPage: page.value.length > first,
      hasPreviousPage: Boolean(after),
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
}

const resolvers = {
  Query: {
    order: (_, { id }, ctx) => ctx.loaders.salesOrder.load(String(id)),
    orders: (_, { first, after, filter }, ctx) => listOrders(ctx, first, after, filter?.customer),
    customer: (_, { id }, ctx) => ctx.loaders.customer.load(String(id)),
  },
  Customer: {
    id: (c) => c.Customer,
    name: (c) => c.CustomerName,
    country: (c) => c.Country,
    commercialPriority: (c) => c.CommercialPriority,
    orders: (c, { first, after }, ctx) => listOrders(ctx, first, after, c.Customer),
  },
  Order: {
    id: (so) => so.SalesOrder,
    customerId: (so) => so.SoldToParty,
    customer: (so, _, ctx) => ctx.loaders.customer.load(so.SoldToParty),
    purchaseOrderByCustomer: (so) => so.PurchaseOrderByCustomer,
    orderDate: (so) => so.SalesOrderDate,
    requestedDeliveryDate: (so) => so.RequestedDeliveryDate,
    confirmedDeliveryDate: (so) => so.ConfirmedDeliveryDate,
    netValue: (so) => ({ amount: so.TotalNetAmount, currency: so.TransactionCurrency }),
    commercialPriority: async (so, _, ctx) => (await ctx.loaders.customer.load(so.SoldToParty))?.CommercialPriority ?? 'NORMAL',
    items: (so) =>
      so.to_Item.map((i) => ({
        item: i.SalesOrderItem,
        material: i.Material,
        quantity: i.RequestedQuantity,
        unit: i.RequestedQuantityUnit,
        netValue: i.NetAmount,
        confirmedDeliveryDate: i.ConfirmedDeliveryDate,
        confirmedQuantity: i.ConfirmedQuantity,
      })),
    erpStatus: (so) => ({
      overallProcessStatus: processing(so.OverallSDProcessStatus),
      overallDeliveryStatus: processing(so.OverallDeliveryStatus),
      creditBlocked: so.TotalCreditCheckStatus === 'B',
      deliveryBlockReason: so.DeliveryBlockReason || null,
      lastChangedAt: so.LastChangeDateTime,
    }),
    production: (so) => so,
    materials: (so) => so,
    quality: (so) => so,
    logistics: (so) => so,
    stage: (so, _, ctx) => stage(ctx, so),
  },
  ProductionSection: {
    status: async (so, _, ctx) => {
      const pos = await productionOrders(ctx, so);
      return productionStatus(pos, await workCenters(ctx, pos));
    },
    orders: (so, _, ctx) => productionOrders(ctx, so),
  },
  ProductionOrder: {
    id: (p) => p.ManufacturingOrder,
    material: (p) => p.Material,
    salesOrderItem: (p) => p.SalesOrderItem,
    status: (p) => p.OrderStatus,
    totalQuantity: (p) => p.TotalQuantity,
    confirmedYieldQuantity: (p) => p.MfgOrderConfirmedYieldQty,
    confirmedScrapQuantity: (p) => p.MfgOrderConfirmedScrapQty,
    unit: (p) => p.ProductionUnit,
    workCenterId: (p) => p.WorkCenter,
    workCenter: (p, _, ctx) => ctx.loaders.workCenter.load(p.WorkCenter),
    scheduledStart: (p) => p.MfgOrderScheduledStartDate,
    scheduledEnd: (p) => p.MfgOrderScheduledEndDate,
    releasedAt: (p) => p.MfgOrderActualReleaseDate,
    startedAt: (p) => p.MfgOrderActualStartDate,
    completedAt: (p) => p.MfgOrderActualEndDate,
    batch: (p) => p.Batch,
  },
  WorkCenter: {
    id: (w) => w.WorkCenter,
    name: (w) => w.WorkCenterText,
    state: (w) => w.State,
    downSince: (w) => w.DownSince,
    expectedUpAt: (w) => w.ExpectedUpAt,
  },
  MaterialsSection: {
    status: async (so, _, ctx) => {
      const [pos, comps] = await Promise.all([productionOrders(ctx, so), components(ctx, so)]);
      return materialsStatus(pos, comps);
    },
    components: (so, _, ctx) => components(ctx, so),
    shortages: async (so, _, ctx) => (await components(ctx, so)).filter((c) => c.ShortageQuantity > 0),
  },
  ComponentAvailability: {
    productionOrder: (c) => c.ManufacturingOrder,
    material: (c) => c.Material,
    requiredQuantity: (c) => c.RequiredQuantity,
    availableQuantity: (c) => c.AvailableQuantity,
    shortageQuantity: (c) => c.ShortageQuantity,
    unit: (c) => c.BaseUnit,
    storageLocation: (c) => c.StorageLocation,
    expectedReceiptDate: (c) => c.ExpectedReceiptDate,
  },
  QualitySection: {
    status: async (so, _, ctx) => {
      const [pos, lotList] = await Promise.all([productionOrders(ctx, so), lots(ctx, so)]);
      return qualityStatus(pos, lotList);
    },
    inspectionLots: (so, _, ctx) => lots(ctx, so),
  },
  InspectionLot: {
    id: (l) => l.InspectionLot,
    material: (l) => l.Material,
    batch: (l) => l.Batch,
    productionOrder: (l) => l.ManufacturingOrder,
    origin: (l) => l.InspectionLotOrigin,
    createdAt: (l) => l.InspectionLotCreatedOn,
    hasUsageDecision: (l) => l.InspectionLotHasUsageDecision,
    usageDecision: (l) => {
      const ud = l.to_UsageDecision;
      if (!ud) return null;
      return {
        code: ud.UsageDecisionCode,
        codeGroup: ud.UsageDecisionCodeGroup,
        valuation: ud.UsageDecisionValuation === 'ACCEPTED' ? 'ACCEPTED' : 'REJECTED',
        decidedAt: ud.UsageDecisionDate,
        qualityScore: ud.UsageDecisionQualityScore,
      };
    },
  },
  LogisticsSection: {
    status: async (so, _, ctx) => {
      const [dels, ships] = await Promise.all([deliveries(ctx, so), shipments(ctx, so)]);
      return logisticsStatus(dels, ships);
    },
    deliveries: (so, _, ctx) => deliveries(ctx, so),
    shipments: (so, _, ctx) => shipments(ctx, so),
    eta: async (so, _, ctx) => {
      const etas = (await shipments(ctx, so)).map((s) => s.EstimatedDeliveryAt).filter(Boolean).sort();
      return etas.at(-1) ?? null;
    },
  },
  OutboundDelivery: {
    id: (d) => d.DeliveryDocument,
    deliveryDate: (d) => d.DeliveryDate,
    shippingPoint: (d) => d.ShippingPoint,
    pickingStatus: (d) => processing(d.OverallPickingStatus),
    packingStatus: (d) => processing(d.OverallPackingStatus),
    goodsMovementStatus: (d) => processing(d.OverallGoodsMovementStatus),
    goodsIssuedAt: (d) => d.ActualGoodsMovementDate,
    billOfLading: (d) => d.BillOfLading,
    shipments: (d, _, ctx) => ctx.loaders.shipments.load(d.DeliveryDocument),
  },
  Shipment: {
    trackingNumber: (s) => s.TrackingNumber,
    carrier: (s) => s.Carrier,
    status: (s) => s.Tag,
    statusCode: (s) => s.StatusCode,
    pickedUpAt: (s) => s.PickedUpAt,
    estimatedDeliveryAt: (s) => s.EstimatedDeliveryAt,
    deliveredAt: (s) => s.DeliveredAt,
  },
};

const yoga = createYoga({
  schema: createSchema({ typeDefs, resolvers }),
  context: () => ({ loaders: loaders() }),
  graphqlEndpoint: '/graphql',
  graphiql: false,
  landingPage: false,
  logging: 'warn',
  plugins: CACHE_TTL_MS > 0 ? [useResponseCache({ session: () => null, ttl: CACHE_TTL_MS })] : [],
});

const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"status":"ok"}');
    return;
  }
  yoga(req, res);
});
server.keepAliveTimeout = 65_000;
server.listen(PORT, HOST, () => {
  const cache = CACHE_TTL_MS > 0 ? `, response cache TTL ${CACHE_TTL_MS} ms` : '';
  console.log(`peer gateway (graphql-yoga + dataloader${cache}) on http://${HOST}:${PORT}/graphql over ${PLANT}`);
});
// Stop at once: open keep-alive connections from a load generator must not hold the exit.
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
