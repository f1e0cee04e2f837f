# spendgate: build with tsc, run the compiled gateway on the current Node LTS against DATABASE_URL.
#   docker build -t spendgate .
#   docker run -p 4242:4242 -p 4243:4243 -e DATABASE_URL=postgres://… -e ADMIN_HOST=0.0.0.0 \
#     -e SPEND_ADMIN_TOKEN=… spendgate
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json knexfile.ts ./
COPY src ./src
COPY adapters ./adapters
COPY migrations ./migrations
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev --no-audit --no-fund

FROM node:24-slim
ENV NODE_ENV=production PORT=4242 ADMIN_PORT=4243
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
USER node
EXPOSE 4242 4243
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||4242)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/src/main.js"]
