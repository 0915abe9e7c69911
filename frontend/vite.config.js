import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// The app serves dist/ under a strict CSP (script-src/style-src 'self'): everything must be a file.
export default defineConfig({
  plugins: [vue()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: {
    // `npm run dev` beside `python -m shared serve` (default port 7071).
    proxy: { '/api': process.env.API_TARGET || 'http://127.0.0.1:7071' },
  },
  test: {
    environment: 'happy-dom',
    include: ['tests/**/*.test.js'],
  },
})
